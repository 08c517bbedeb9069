import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDRunFiles
import CSGDTestSupport
import CSGDTraining
import Foundation
import XCTest

/// The metrics.jsonl records: every kind reads back equal to what was written, non-finite
/// numbers are written as strings rather than dropped, and a write failure stops the run.
final class RecordsTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "csgd-records-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    static let fullEpoch = EpochRecord(
        phase: .csgd, round: 2, epoch: 3, trainLoss: 0.61, trainTop1: 0.78, testLoss: 0.52,
        testTop1: 0.81, testTop5: 0.99, lr: 0.1, seconds: 70.5, imgPerS: 850.25, worldSize: 2,
        dataWaitSeconds: 0.01, skippedImages: 4, deviationKernels: 1.5e-7,
        deviationVectors: 0)

    static let prune = PruneRecord(
        round: 1, method: .magnitude, maxLogitDiff: 2e-6, testTop1Before: 0.75,
        testTop1After: 0.5, flopsBefore: 5_000_000, flopsAfter: 2_000_000, paramsBefore: 1000,
        paramsAfter: 400,
        layers: [
            PruneRecord.Layer(name: "conv1", before: 16, after: 12),
            PruneRecord.Layer(name: "fc", before: 10, after: 10),
        ])

    func roundTrip(_ r: MetricsRecord) throws -> MetricsRecord {
        let line = try r.jsonLine()
        XCTAssertFalse(line.contains("\n"), "one record, one line")
        return try MetricsRecord(jsonLine: line)
    }

    func testEveryRecordKindRoundTrips() throws {
        let minimalEpoch = EpochRecord(phase: .train, round: 1, epoch: 1)
        let minimalPrune = PruneRecord(round: 1, method: .csgd)
        for r: MetricsRecord in [
            .epoch(Self.fullEpoch), .epoch(minimalEpoch), .prune(Self.prune),
            .prune(minimalPrune),
        ] {
            XCTAssertEqual(try roundTrip(r), r)
        }
        // Optional fields left nil are left out of the line.
        XCTAssertEqual(
            try MetricsRecord.epoch(minimalEpoch).jsonLine(),
            #"{"epoch":1,"phase":"train","round":1}"#)
    }

    func testKeyNamesAreTheDocumentedSnakeCaseOnesSorted() throws {
        let epoch = try MetricsRecord.epoch(Self.fullEpoch).jsonLine()
        XCTAssertEqual(
            try keys(epoch),
            [
                "data_wait_seconds", "deviation_kernels", "deviation_vectors", "epoch",
                "img_per_s", "lr", "phase", "round", "seconds", "skipped_images", "test_loss",
                "test_top1", "test_top5", "train_loss", "train_top1", "world_size",
            ])
        XCTAssertTrue(epoch.hasPrefix(#"{"data_wait_seconds":0.01,"#), epoch)
        XCTAssertTrue(epoch.contains(#""phase":"csgd""#), epoch)
        let prune = try MetricsRecord.prune(Self.prune).jsonLine()
        XCTAssertEqual(
            try keys(prune),
            [
                "flops_after", "flops_before", "layers", "max_logit_diff", "method",
                "params_after", "params_before", "phase", "round", "test_top1_after",
                "test_top1_before",
            ])
        XCTAssertTrue(prune.contains(#""method":"magnitude""#), prune)
        XCTAssertTrue(prune.contains(#""phase":"prune""#), prune)
        XCTAssertTrue(prune.contains(#"{"after":12,"before":16,"name":"conv1"}"#), prune)
    }

    func testNonFiniteNumbersAreWrittenAsStringsAndReadBack() throws {
        var e = EpochRecord(phase: .train, round: 1, epoch: 1)
        e.trainLoss = .nan
        e.testLoss = .infinity
        e.deviationKernels = -.infinity
        let line = try MetricsRecord.epoch(e).jsonLine()
        XCTAssertTrue(line.contains(#""train_loss":"NaN""#), line)
        XCTAssertTrue(line.contains(#""test_loss":"Infinity""#), line)
        XCTAssertTrue(line.contains(#""deviation_kernels":"-Infinity""#), line)
        // Still a JSON object for any other reader.
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        guard case .epoch(let back) = try MetricsRecord(jsonLine: line) else {
            return XCTFail("not read back as an epoch record")
        }
        XCTAssertTrue(back.trainLoss?.isNaN == true)
        XCTAssertEqual(back.testLoss, .infinity)
        XCTAssertEqual(back.deviationKernels, -.infinity)
        var p = PruneRecord(round: 1, method: .csgd)
        p.maxLogitDiff = .nan
        let pl = try MetricsRecord.prune(p).jsonLine()
        XCTAssertTrue(pl.contains(#""max_logit_diff":"NaN""#), pl)
        guard case .prune(let pb) = try MetricsRecord(jsonLine: pl) else {
            return XCTFail("not read back as a prune record")
        }
        XCTAssertTrue(pb.maxLogitDiff?.isNaN == true)
    }

    func testRunLogAppendsRecordsAndANaNRecordIsNotDropped() throws {
        let path = dir + "/sub/metrics.jsonl"
        let log = RunLog(comm: LocalCommunicator(), metricsPath: path)
        var nan = Self.fullEpoch
        nan.trainLoss = .nan
        try log.record(.epoch(Self.fullEpoch), step: 8)
        try log.record(.epoch(nan), step: 16)
        try log.record(.prune(Self.prune), step: 16)
        let lines = try String(contentsOfFile: path, encoding: .utf8)
            .split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[1].contains(#""train_loss":"NaN""#))
        XCTAssertEqual(try MetricsRecord(jsonLine: lines[0]), .epoch(Self.fullEpoch))
        XCTAssertEqual(try MetricsRecord(jsonLine: lines[2]), .prune(Self.prune))
        // A run without a metrics file writes nothing and does not fail.
        try RunLog(comm: LocalCommunicator(), metricsPath: nil).record(.epoch(nan), step: 16)
    }

    func testAnUnwritableMetricsFileIsAOneLineError() throws {
        // The metrics file's folder is a regular file: neither folder nor file can be made.
        let blocker = dir + "/not-a-folder"
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let log = RunLog(comm: LocalCommunicator(), metricsPath: blocker + "/metrics.jsonl")
        assertCSGDError(["cannot write", blocker + "/metrics.jsonl"]) {
            try log.record(.epoch(Self.fullEpoch), step: 8)
        }
        // The metrics path itself is a folder.
        let folder = dir + "/metrics.jsonl"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        assertCSGDError(["cannot write", folder]) {
            try RunLog(comm: LocalCommunicator(), metricsPath: folder)
                .record(.prune(Self.prune), step: 16)
        }
    }

    func testOlderAndMalformedLines() throws {
        // Lines of runs that predate "round", "method" and "layers" still read.
        XCTAssertEqual(
            try MetricsRecord(jsonLine: #"{"phase":"finetune","epoch":2,"test_top1":0.5}"#),
            .epoch(EpochRecord(phase: .finetune, round: 0, epoch: 2, testTop1: 0.5)))
        XCTAssertEqual(
            try MetricsRecord(jsonLine: #"{"phase":"prune","max_logit_diff":1e-6,"x":[1]}"#),
            .prune(PruneRecord(round: 1, method: .csgd, maxLogitDiff: 1e-6)))
        // What is wrong, in one line.
        assertCSGDError(["not a JSON object"]) { _ = try MetricsRecord(jsonLine: "not json") }
        assertCSGDError(["not a JSON object"]) { _ = try MetricsRecord(jsonLine: "[1, 2]") }
        assertCSGDError(["record has no \"phase\""]) {
            _ = try MetricsRecord(jsonLine: #"{"epoch":1}"#)
        }
        assertCSGDError(["record has no \"epoch\""]) {
            _ = try MetricsRecord(jsonLine: #"{"phase":"train"}"#)
        }
        assertCSGDError(["phase", "bogus"]) {
            _ = try MetricsRecord(jsonLine: #"{"phase":"bogus","epoch":1}"#)
        }
        assertCSGDError(["method"]) {
            _ = try MetricsRecord(jsonLine: #"{"phase":"prune","method":"random"}"#)
        }
        assertCSGDError(["layers.0.before"]) {
            _ = try MetricsRecord(
                jsonLine: #"{"phase":"prune","layers":[{"name":"a","before":"x","after":1}]}"#)
        }
    }

    func testStepRecordRoundTripsWithNonFiniteLossAndSortedKeys() throws {
        var r = StepRecord(
            step: 250, time: "2026-11-26T12:40:01Z", elapsedSeconds: 93.4, epoch: 2, round: 1,
            phase: .csgd, lr: 0.044, loss: .nan, top1: 0.75, imgPerS: 187.5,
            dataWaitFraction: 0.001, commFraction: 0.02, deviationKernels: 3.1e-7,
            deviationVectors: 0)
        let line = try r.jsonLine()
        XCTAssertTrue(line.contains("\"loss\":\"NaN\""), line)
        XCTAssertEqual(
            try keys(line),
            [
                "comm_fraction", "data_wait_fraction", "deviation_kernels", "deviation_vectors",
                "elapsed_seconds", "epoch", "img_per_s", "loss", "lr", "phase", "round", "step",
                "time", "top1",
            ])
        var back = try StepRecord(jsonLine: line)
        XCTAssertTrue(back.loss.isNaN)
        back.loss = 0  // NaN ≠ NaN: compare every other field
        r.loss = 0
        XCTAssertEqual(back, r)
        r.deviationKernels = nil
        r.deviationVectors = nil
        XCTAssertEqual(try StepRecord(jsonLine: try r.jsonLine()), r)
        XCTAssertThrowsError(try StepRecord(jsonLine: "{\"step\": 1}"))
    }

    func keys(_ line: String) throws -> [String] {
        let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return (o?.keys).map { $0.sorted() } ?? []
    }
}
