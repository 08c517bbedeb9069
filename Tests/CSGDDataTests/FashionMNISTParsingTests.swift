// IDX/gzip parsing of Fashion-MNIST on tiny files the test writes itself: layout, padding,
// limit, and one CSGDError naming the file for each kind of bad input.

import CSGDCore
import CSGDData
import CSGDTestSupport
import Foundation
import XCTest

final class FashionMNISTParsingTests: XCTestCase {
    private var dir = ""
    private let imagesName = "train-images-idx3-ubyte.gz"
    private let labelsName = "train-labels-idx1-ubyte.gz"

    override func setUpWithError() throws { dir = try makeScratchDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    /// Writes a train split of `n` images (pixel = (7·i + 28·r + c) mod 256) and `labels`.
    private func writeSplit(
        n: Int, labels: [UInt8], imageMagic: Int = 2051, labelMagic: Int = 2049,
        imageCountInHeader: Int? = nil, side: Int = 28, prefix: String = "train"
    ) {
        var data: [UInt8] = []
        for i in 0..<n {
            for r in 0..<side {
                for c in 0..<side { data.append(UInt8((7 * i + 28 * r + c) % 256)) }
            }
        }
        writeGzip(
            idxBytes(magic: imageMagic, dims: [imageCountInHeader ?? n, side, side], data: data),
            to: dir + "/\(prefix)-images-idx3-ubyte.gz")
        writeGzip(
            idxBytes(magic: labelMagic, dims: [labels.count], data: labels),
            to: dir + "/\(prefix)-labels-idx1-ubyte.gz")
    }

    func testParsesPadsAndLabelsTinyFile() throws {
        writeSplit(n: 3, labels: [9, 0, 3])
        let ds = try FashionMNIST.load(directory: dir, train: true)
        XCTAssertEqual(ds.count, 3)
        XCTAssertEqual([ds.channels, ds.height, ds.width, ds.numClasses], [1, 32, 32, 10])
        XCTAssertEqual(ds.labels, [9, 0, 3])
        XCTAssertEqual(ds.mean, [0.2860])
        XCTAssertEqual(ds.std, [0.3530])
        XCTAssertEqual(ds.pixels.count, 3 * 32 * 32)
        for i in 0..<3 {
            for y in 0..<32 {
                for x in 0..<32 {
                    let v = ds.pixels[i * 1024 + y * 32 + x]
                    if (2..<30).contains(y) && (2..<30).contains(x) {
                        XCTAssertEqual(Int(v), (7 * i + 28 * (y - 2) + (x - 2)) % 256)
                    } else {
                        XCTAssertEqual(v, 0, "border of image \(i) at (\(y), \(x))")
                    }
                }
            }
        }
        let limited = try FashionMNIST.load(directory: dir, train: true, limit: 2)
        XCTAssertEqual(limited.count, 2)
        XCTAssertEqual(limited.labels, [9, 0])
        XCTAssertEqual(Array(limited.pixels), Array(ds.pixels[0..<2048]))
        XCTAssertEqual(limited, ds.subset(first: 2))
    }

    func testTestSplitAndUncompressedFallback() throws {
        writeSplit(n: 2, labels: [1, 2], prefix: "t10k")
        let ds = try FashionMNIST.load(directory: dir, train: false)
        XCTAssertEqual(ds.labels, [1, 2])
        XCTAssertEqual(ds.name, "fashion-mnist-test")
        // A gunzipped copy (no .gz) is read the same way.
        let plainDir = try makeScratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: plainDir) }
        var data: [UInt8] = []
        for i in 0..<2 {
            for r in 0..<28 { for c in 0..<28 { data.append(UInt8((7 * i + 28 * r + c) % 256)) } }
        }
        writeBytes(
            idxBytes(magic: 2051, dims: [2, 28, 28], data: data),
            to: plainDir + "/t10k-images-idx3-ubyte")
        writeBytes(
            idxBytes(magic: 2049, dims: [2], data: [1, 2]),
            to: plainDir + "/t10k-labels-idx1-ubyte")
        XCTAssertEqual(try FashionMNIST.load(directory: plainDir, train: false).pixels, ds.pixels)
    }

    func testMissingFile() {
        assertCSGDError([imagesName]) { _ = try FashionMNIST.load(directory: dir, train: true) }
        writeGzip(idxBytes(magic: 2051, dims: [0, 28, 28], data: []), to: dir + "/" + imagesName)
        assertCSGDError([labelsName]) { _ = try FashionMNIST.load(directory: dir, train: true) }
    }

    func testWrongMagic() {
        writeSplit(n: 2, labels: [0, 1], imageMagic: 2049)
        assertCSGDError([imagesName, "magic"]) {
            _ = try FashionMNIST.load(directory: dir, train: true)
        }
        writeSplit(n: 2, labels: [0, 1], labelMagic: 2051)
        assertCSGDError([labelsName, "magic"]) {
            _ = try FashionMNIST.load(directory: dir, train: true)
        }
    }

    func testTruncatedData() {
        // Header announces 3 images, only 2 follow.
        writeSplit(n: 2, labels: [0, 1, 2], imageCountInHeader: 3)
        assertCSGDError([imagesName, "truncated"]) {
            _ = try FashionMNIST.load(directory: dir, train: true)
        }
        // Header cut short.
        writeGzip([0, 0, 8, 3, 0, 0], to: dir + "/" + imagesName)
        assertCSGDError([imagesName, "truncated"]) {
            _ = try FashionMNIST.load(directory: dir, train: true)
        }
    }

    func testTruncatedGzipStream() throws {
        writeSplit(n: 4, labels: [0, 1, 2, 3])
        let path = dir + "/" + imagesName
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        writeBytes(Array(whole.prefix(whole.count / 2)), to: path)
        assertCSGDError([imagesName]) { _ = try FashionMNIST.load(directory: dir, train: true) }
    }

    func testTrailingBytesAndWrongSize() {
        writeSplit(n: 2, labels: [0, 1])
        writeGzip(idxBytes(magic: 2049, dims: [2], data: [0, 1, 5]), to: dir + "/" + labelsName)
        assertCSGDError([labelsName]) { _ = try FashionMNIST.load(directory: dir, train: true) }
        writeSplit(n: 2, labels: [0, 1], side: 27)
        assertCSGDError([imagesName, "28×28"]) {
            _ = try FashionMNIST.load(directory: dir, train: true)
        }
    }

    func testLabelOutOfRange() {
        writeSplit(n: 3, labels: [0, 10, 2])
        assertCSGDError([labelsName, "label 10", "index 1"]) {
            _ = try FashionMNIST.load(directory: dir, train: true)
        }
    }

    func testImageLabelCountMismatch() {
        writeSplit(n: 3, labels: [0, 1])
        assertCSGDError([imagesName, labelsName]) {
            _ = try FashionMNIST.load(directory: dir, train: true)
        }
    }

    func testNegativeLimitIsRejected() {
        writeSplit(n: 1, labels: [0])
        assertCSGDError(["limit"]) {
            _ = try FashionMNIST.load(directory: dir, train: true, limit: -1)
        }
    }
}
