// Checks against the real Fashion-MNIST files from the Debian package dataset-fashion-mnist
// (skipped when they are not installed): split sizes, class balance, first label, zero border
// and the normalization statistics.

import CSGDData
import Foundation
import XCTest

final class FashionMNISTRealDataTests: XCTestCase {
    private func requireDataset() throws {
        let probe = FashionMNIST.defaultDirectory + "/train-images-idx3-ubyte.gz"
        if !FileManager.default.fileExists(atPath: probe) {
            throw XCTSkip("Fashion-MNIST not installed at \(FashionMNIST.defaultDirectory)")
        }
    }

    func testTrainSplit() throws {
        try requireDataset()
        let ds = try FashionMNIST.load(directory: FashionMNIST.defaultDirectory, train: true)
        XCTAssertEqual(ds.count, 60_000)
        XCTAssertEqual(ds.labels.first, 9)  // the first training image is an ankle boot
        var histogram = [Int](repeating: 0, count: 10)
        for l in ds.labels { histogram[Int(l)] += 1 }
        XCTAssertEqual(histogram, [Int](repeating: 6000, count: 10))

        // Border must be zero; the 28×28 interior reproduces the published statistics.
        var border: [Int] = []
        var interior: [Int] = []
        for y in 0..<32 {
            for x in 0..<32 {
                if (2..<30).contains(y) && (2..<30).contains(x) {
                    interior.append(y * 32 + x)
                } else {
                    border.append(y * 32 + x)
                }
            }
        }
        var nonZeroBorder = 0
        var valueCounts = [Int](repeating: 0, count: 256)
        ds.pixels.withUnsafeBufferPointer { p in
            for i in 0..<ds.count {
                let image = p.baseAddress! + i * 1024
                for o in border where image[o] != 0 { nonZeroBorder += 1 }
                for o in interior { valueCounts[Int(image[o])] += 1 }
            }
        }
        XCTAssertEqual(nonZeroBorder, 0)
        var sum = 0.0
        var sumSquares = 0.0
        for (v, n) in valueCounts.enumerated() {
            sum += Double(n) * Double(v) / 255
            sumSquares += Double(n) * (Double(v) / 255) * (Double(v) / 255)
        }
        let total = Double(ds.count * 784)
        let mean = sum / total
        let std = (sumSquares / total - mean * mean).squareRoot()
        XCTAssertEqual(mean, Double(FashionMNIST.mean), accuracy: 5e-4)
        XCTAssertEqual(std, Double(FashionMNIST.std), accuracy: 5e-4)
    }

    func testTestSplit() throws {
        try requireDataset()
        let ds = try FashionMNIST.load(directory: FashionMNIST.defaultDirectory, train: false)
        XCTAssertEqual(ds.count, 10_000)
        var histogram = [Int](repeating: 0, count: 10)
        for l in ds.labels { histogram[Int(l)] += 1 }
        XCTAssertEqual(histogram, [Int](repeating: 1000, count: 10))
        let limited = try FashionMNIST.load(
            directory: FashionMNIST.defaultDirectory, train: false, limit: 100)
        XCTAssertEqual(limited, ds.subset(first: 100))
    }
}
