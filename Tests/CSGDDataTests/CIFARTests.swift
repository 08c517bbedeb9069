// CIFAR-10 and CIFAR-100 binary files written by the test in the exact record layout:
// pixels and labels round-trip, limits span files, and bad files give a CSGDError naming them.

import CSGDCore
import CSGDData
import CSGDTestSupport
import Foundation
import XCTest

final class CIFARTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws { dir = try makeScratchDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes `labels.count` records (label bytes then 3072 random pixels) and returns the pixels.
    @discardableResult
    private func writeRecords(_ name: String, labels: [[UInt8]], seed: UInt64) -> [UInt8] {
        let pixels = randomBytes(labels.count * 3072, seed: seed)
        var bytes: [UInt8] = []
        for (i, l) in labels.enumerated() {
            bytes += l
            bytes += pixels[(i * 3072)..<((i + 1) * 3072)]
        }
        writeBytes(bytes, to: dir + "/" + name)
        return pixels
    }

    /// Five train batches of 3 records and a test batch of 2; returns (pixels, labels).
    private func writeCIFAR10() -> (train: [UInt8], labels: [Int32], test: [UInt8]) {
        var pixels: [UInt8] = []
        var labels: [Int32] = []
        for b in 1...5 {
            let l = (0..<3).map { UInt8((b * 3 + $0) % 10) }
            pixels += writeRecords("data_batch_\(b).bin", labels: l.map { [$0] }, seed: UInt64(b))
            labels += l.map { Int32($0) }
        }
        let test = writeRecords("test_batch.bin", labels: [[4], [9]], seed: 99)
        return (pixels, labels, test)
    }

    func testCIFAR10RoundTrip() throws {
        let expected = writeCIFAR10()
        let train = try CIFAR.load(directory: dir, variant: .cifar10, train: true, limit: nil)
        XCTAssertEqual(train.count, 15)
        XCTAssertEqual(
            [train.channels, train.height, train.width, train.numClasses], [3, 32, 32, 10])
        XCTAssertEqual(train.pixels, expected.train)
        XCTAssertEqual(train.labels, expected.labels)
        XCTAssertEqual(train.mean, [0.4914, 0.4822, 0.4465])
        XCTAssertEqual(train.std, [0.2470, 0.2435, 0.2616])
        XCTAssertEqual(train.name, "cifar10-train")
        // Plane order: byte 1 of a record is R(0,0), byte 1 + 1024 is G(0,0).
        let record0 = try Data(contentsOf: URL(fileURLWithPath: dir + "/data_batch_1.bin"))
        XCTAssertEqual(train.pixels[0], record0[1])
        XCTAssertEqual(train.pixels[1024 + 5 * 32 + 7], record0[1 + 1024 + 5 * 32 + 7])

        let test = try CIFAR.load(directory: dir, variant: .cifar10, train: false)
        XCTAssertEqual(test.labels, [4, 9])
        XCTAssertEqual(test.pixels, expected.test)

        // A limit spanning three files keeps the records in file order.
        let limited = try CIFAR.load(directory: dir, variant: .cifar10, train: true, limit: 7)
        XCTAssertEqual(limited, train.subset(first: 7))
    }

    func testCIFAR100RoundTripUsesFineLabels() throws {
        let labels: [[UInt8]] = [[19, 99], [0, 0], [7, 42]]
        let pixels = writeRecords("train.bin", labels: labels, seed: 5)
        writeRecords("test.bin", labels: [[3, 17]], seed: 6)
        let ds = try CIFAR.load(directory: dir, variant: .cifar100, train: true)
        XCTAssertEqual(ds.numClasses, 100)
        XCTAssertEqual(ds.labels, [99, 0, 42])
        XCTAssertEqual(ds.pixels, pixels)
        XCTAssertEqual(ds.mean, [0.5071, 0.4865, 0.4409])
        XCTAssertEqual(ds.std, [0.2673, 0.2564, 0.2762])
        XCTAssertEqual(
            try CIFAR.load(directory: dir, variant: .cifar100, train: false).labels, [17])
    }

    func testMissingFile() {
        writeRecords("data_batch_1.bin", labels: [[1]], seed: 1)
        assertCSGDError(["data_batch_2.bin"]) {
            _ = try CIFAR.load(directory: dir, variant: .cifar10, train: true)
        }
        assertCSGDError(["test.bin"]) {
            _ = try CIFAR.load(directory: dir, variant: .cifar100, train: false)
        }
    }

    func testTruncatedFile() throws {
        _ = writeCIFAR10()
        let path = dir + "/data_batch_2.bin"
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        writeBytes(Array(whole.dropLast(100)), to: path)
        assertCSGDError(["data_batch_2.bin", "truncated"]) {
            _ = try CIFAR.load(directory: dir, variant: .cifar10, train: true)
        }
        writeBytes([], to: path)
        assertCSGDError(["data_batch_2.bin"]) {
            _ = try CIFAR.load(directory: dir, variant: .cifar10, train: true)
        }
        // A CIFAR-10-sized record (3073 bytes) is not a CIFAR-100 record (3074 bytes).
        writeRecords("train.bin", labels: [[1], [2]], seed: 3)
        assertCSGDError(["train.bin", "truncated"]) {
            _ = try CIFAR.load(directory: dir, variant: .cifar100, train: true)
        }
    }

    func testLabelOutOfRange() {
        _ = writeCIFAR10()
        writeRecords("data_batch_3.bin", labels: [[1], [10], [2]], seed: 3)
        assertCSGDError(["data_batch_3.bin", "label 10", "record 1"]) {
            _ = try CIFAR.load(directory: dir, variant: .cifar10, train: true)
        }
        writeRecords("train.bin", labels: [[1, 5], [2, 100]], seed: 3)
        assertCSGDError(["train.bin", "label 100"]) {
            _ = try CIFAR.load(directory: dir, variant: .cifar100, train: true)
        }
        writeRecords("train.bin", labels: [[20, 5]], seed: 3)
        assertCSGDError(["train.bin", "coarse label 20"]) {
            _ = try CIFAR.load(directory: dir, variant: .cifar100, train: true)
        }
    }
}
