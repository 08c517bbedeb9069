// The run log's TensorBoard copy: every numeric JSON field of every record kind (all optional
// fields set) has its scalar `<group>/<key>` with the same value, the run log writes them at
// the steps it is given into one new events file, and a TensorBoard folder that cannot be made
// is one error line, as for the .jsonl records.

import CSGDCore
import CSGDDistributed
import CSGDRunFiles
import CSGDTensorBoard
import CSGDTestSupport
import Foundation
import XCTest

final class RunLogTensorBoardTests: XCTestCase {
    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "csgd-tblog-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    static let step = StepRecord(
        step: 250, time: "2026-11-26T12:40:01Z", elapsedSeconds: 93.4, epoch: 2, round: 1,
        phase: .csgd, lr: 0.044, loss: .nan, top1: 0.75, imgPerS: 187.5,
        dataWaitFraction: 0.001, commFraction: 0.02, deviationKernels: 3.1e-7,
        deviationVectors: 0)
    static let epoch = EpochRecord(
        phase: .csgd, round: 2, epoch: 3, trainLoss: 0.61, trainTop1: 0.78, testLoss: 0.52,
        testTop1: 0.81, testTop5: 0.99, lr: 0.1, seconds: 70.5, imgPerS: 850.25, worldSize: 2,
        dataWaitSeconds: 0.01, skippedImages: 4, deviationKernels: 1.5e-7,
        deviationVectors: .infinity)
    static let prune = PruneRecord(
        round: 1, method: .csgd, maxLogitDiff: 2e-6, testTop1Before: 0.75, testTop1After: 0.5,
        flopsBefore: 5_000_000, flopsAfter: 2_000_000, paramsBefore: 1000, paramsAfter: 400,
        layers: [PruneRecord.Layer(name: "conv1", before: 16, after: 12)])

    /// The numeric fields of a JSON line (non-finite ones are the strings of the encoding).
    func numericFields(_ line: String) throws -> [String: Double] {
        let object = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let nonFinite = ["NaN": Double.nan, "Infinity": .infinity, "-Infinity": -.infinity]
        var out: [String: Double] = [:]
        for (k, v) in object {
            if let s = v as? String, let x = nonFinite[s] {
                out[k] = x
            } else if let n = v as? NSNumber {  // the records hold no booleans
                out[k] = n.doubleValue
            }
        }
        return out
    }

    func assertSame(_ a: Double?, _ b: Double?, _ what: String) {
        XCTAssertTrue(
            a == b || (a?.isNaN == true && b?.isNaN == true), "\(what): \(a as Any) vs \(b as Any)")
    }

    func testEveryNumericFieldOfEveryRecordIsATaggedScalar() throws {
        var cases: [(String, [(tag: String, value: Double)], [String: Double], Set<String>)] = []
        var stepFields = try numericFields(try Self.step.jsonLine())
        stepFields["step"] = nil  // the event's step
        cases.append(("step", Self.step.scalars, stepFields, []))
        let epochFields = try numericFields(try MetricsRecord.epoch(Self.epoch).jsonLine())
        cases.append(("epoch", Self.epoch.scalars, epochFields, []))
        let pruneFields = try numericFields(try MetricsRecord.prune(Self.prune).jsonLine())
        cases.append(
            ("prune", Self.prune.scalars, pruneFields, ["prune/flops_cut", "prune/params_cut"]))
        for (kind, scalars, fields, derived) in cases {
            let tags = Dictionary(
                scalars.map { ($0.tag, $0.value) }, uniquingKeysWith: { a, _ in a })
            XCTAssertEqual(tags.count, scalars.count, "\(kind): a tag used twice")
            var expected = Set(derived)
            for (key, value) in fields {
                let group = kind == "step" ? (key.hasPrefix("deviation_") ? "csgd" : "train") : kind
                expected.insert(group + "/" + key)
                assertSame(tags[group + "/" + key], value, "\(kind) \(key)")
            }
            XCTAssertEqual(Set(tags.keys), expected, kind)
        }
        let cut = Dictionary(
            Self.prune.scalars.map { ($0.tag, $0.value) }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(cut["prune/flops_cut"], 0.6)
        XCTAssertEqual(cut["prune/params_cut"], 0.6)
        // Nothing for absent optional fields.
        XCTAssertEqual(
            EpochRecord(phase: .train, round: 1, epoch: 1).scalars.map(\.tag),
            ["epoch/epoch", "epoch/round"])
    }

    func testRunLogWritesEveryRecordToOneNewEventsFile() throws {
        let log = RunLog(
            comm: LocalCommunicator(), metricsPath: dir + "/metrics.jsonl",
            stepsPath: dir + "/steps.jsonl", tensorBoardDir: dir + "/tb")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/tb"))
        try log.record(step: Self.step)
        try log.record(.epoch(Self.epoch), step: 300)
        try log.record(.prune(Self.prune), step: 300)
        let files = EventFileReader.files(in: dir + "/tb")
        XCTAssertEqual(files.count, 1)
        let c = try EventFileReader.read(try XCTUnwrap(files.first))
        XCTAssertEqual(c.fileVersion, EventFileWriter.fileVersion)
        let want =
            Self.step.scalars.map { (Int64(250), $0.tag, Float($0.value)) }
            + (Self.epoch.scalars + Self.prune.scalars).map {
                (Int64(300), $0.tag, Float($0.value))
            }
        XCTAssertEqual(c.scalars.count, want.count)
        for (got, w) in zip(c.scalars, want) {
            XCTAssertEqual(got.step, w.0, w.1)
            XCTAssertEqual(got.tag, w.1)
            XCTAssertEqual(got.value.bitPattern, w.2.bitPattern, w.1)
        }
        // The .jsonl records are still written, first.
        XCTAssertEqual(
            try String(contentsOfFile: dir + "/steps.jsonl", encoding: .utf8),
            try Self.step.jsonLine() + "\n")
    }

    func testAnUnwritableTensorBoardFolderIsAOneLineError() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir + "/tb"))
        let log = RunLog(comm: LocalCommunicator(), metricsPath: nil, tensorBoardDir: dir + "/tb")
        assertCSGDError(["cannot create the TensorBoard folder", dir + "/tb"]) {
            try log.record(.prune(Self.prune), step: 1)
        }
    }
}
