import CSGDTestSupport
import Foundation
import XCTest

/// Each built-in family beyond the ResNets trains through the real binary on Fashion-MNIST
/// (1-channel 28×28 images): a couple of steps at a quarter of the width, a finite loss, and
/// the model file evaluates.
final class ModelFamiliesCLITests: XCTestCase {
    func testEachFamilyTrainsAFewStepsOnFashionMNIST() throws {
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        let dir = NSTemporaryDirectory() + "csgd-families-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for model in ["vgg16", "mobilenetv2", "densenet40", "densenet40-k24"] {
            let out = dir + "/" + model
            try CLIRunner.succeed([
                "train", "--model", model, "--width-multiplier", "0.25", "--train-limit", "64",
                "--test-limit", "32", "--batch-size", "16", "--epochs", "1", "--max-steps", "2",
                "--log-every", "1", "--out-dir", out,
            ])
            // steps.jsonl: one record per step, each with the running training loss.
            let lines = try String(contentsOfFile: out + "/steps.jsonl", encoding: .utf8)
                .split(separator: "\n")
            let losses = try lines.map { line -> Double in
                let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return (o?["loss"] as? Double) ?? .nan
            }
            XCTAssertEqual(losses.count, 2, "\(model): \(lines)")
            XCTAssertTrue(losses.allSatisfy { $0.isFinite && $0 > 0 }, "\(model): \(losses)")
        }
    }
}
