import CSGDDistributed
import XCTest

@testable import CSGDBench

/// `bench train --model resnet50 --image-size 224` measures the same net the PyTorch peer
/// (../shared/bench/pytorch-peer/bench_resnet50.py) does. Nothing here asserts a speed.
final class TrainBenchmarkTests: XCTestCase {
    func testResNet50At224IsThePeersNet() throws {
        var o = TrainBenchmark.Options()
        o.model = "resnet50"
        o.imageSize = 224
        o.batch = 1
        o.steps = 1
        o.warmup = 0
        o.full = false
        let rows = try TrainBenchmark.run(comm: LocalCommunicator(), options: o)
        let step = try XCTUnwrap(rows.first { $0.name.hasPrefix("train_step_") })
        XCTAssertEqual(step.name, "train_step_resnet50_224_b1x1_rank0")
        // The peer prints params=25557032 for torchvision's layout with a 1000-way head.
        XCTAssertEqual(step.extra["params"], 25_557_032)
        // 4.09 G multiply-adds per 224×224 image (convs + FC), the figure usually quoted.
        let macs = try XCTUnwrap(step.extra["macs_per_image"])
        XCTAssertEqual(macs / 1e9, 4.09, accuracy: 0.01)
        // GFLOP/s per rank = 3 passes × 2 FLOPs per multiply-add over the step time.
        let gflops = try XCTUnwrap(step.extra["gflops_per_rank"])
        let stepSeconds = try XCTUnwrap(step.extra["step_ms"]) / 1e3
        XCTAssertEqual(gflops * 1e9 * stepSeconds, 6 * macs, accuracy: 1e-6 * 6 * macs)
        XCTAssertEqual(step.value, 1 / stepSeconds, accuracy: 1e-9 * step.value)
    }

    func testRowNamesCarryTheSizeUnlessCIFARAt32() throws {
        XCTAssertEqual(
            try TrainBenchmark.rowModelName(model: "resnet56", imageSize: nil), "resnet56")
        XCTAssertEqual(
            try TrainBenchmark.rowModelName(model: "resnet56", imageSize: 64), "resnet56_64")
        XCTAssertEqual(
            try TrainBenchmark.rowModelName(model: "resnet50", imageSize: nil), "resnet50_224")
        XCTAssertEqual(
            try TrainBenchmark.rowModelName(model: "resnet50", imageSize: 32), "resnet50_32")
        XCTAssertThrowsError(try TrainBenchmark.rowModelName(model: "resnet51", imageSize: nil))
    }
}
