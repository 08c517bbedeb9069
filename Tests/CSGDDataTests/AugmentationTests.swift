// Batch assembly and augmentation: plain normalization, exact mirroring, exact crop shifts on
// a hand-made image, and per-sample determinism independent of batch composition (the basis
// of 1-rank vs N-rank equality).

import CSGDCore
import CSGDData
import XCTest

final class AugmentationTests: XCTestCase {
    /// `n` random 3×8×8 images with labels `i % 10`.
    private func randomDataset(n: Int = 20) -> ImageDataset {
        ImageDataset(
            name: "random", channels: 3, height: 8, width: 8, numClasses: 10,
            pixels: randomBytes(n * 192, seed: 11), labels: (0..<n).map { Int32($0 % 10) },
            mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616])
    }

    /// Runs `makeBatch` and returns (images, labels).
    private func batch(
        _ ds: ImageDataset, _ indices: [Int], _ aug: Augmentation, seed: UInt64 = 3,
        epoch: Int = 0
    ) -> ([Float], [Int32]) {
        var images = [Float](repeating: .nan, count: indices.count * ds.imageSize)
        var labels = [Int32](repeating: -1, count: indices.count)
        images.withUnsafeMutableBufferPointer { img in
            labels.withUnsafeMutableBufferPointer { lab in
                makeBatch(
                    dataset: ds, indices: indices, augmentation: aug, seed: seed, epoch: epoch,
                    images: img.baseAddress!, labels: lab.baseAddress!)
            }
        }
        return (images, labels)
    }

    func testNoAugmentationIsPlainNormalization() {
        let ds = randomDataset()
        let indices = [3, 0, 17, 3]
        let (images, labels) = batch(ds, indices, .none)
        XCTAssertEqual(labels, indices.map { ds.labels[$0] })
        for (b, i) in indices.enumerated() {
            for c in 0..<3 {
                for p in 0..<64 {
                    let raw = ds.pixels[i * 192 + c * 64 + p]
                    let expected = (Float(raw) / 255 - ds.mean[c]) / ds.std[c]
                    XCTAssertEqual(images[b * 192 + c * 64 + p], expected)
                }
            }
        }
    }

    func testFlipMirrorsRowsExactly() {
        let ds = randomDataset(n: 64)
        let flipOnly = Augmentation(padCrop: 0, horizontalFlip: true)
        let indices = Array(0..<64)
        let (plain, _) = batch(ds, indices, .none)
        let (flipped, _) = batch(ds, indices, flipOnly)
        var flips = 0
        for i in indices {
            let d = flipOnly.draw(seed: 3, epoch: 0, index: i)
            XCTAssertEqual(d.shiftX, 0)
            XCTAssertEqual(d.shiftY, 0)
            if d.flip { flips += 1 }
            for c in 0..<3 {
                for y in 0..<8 {
                    let row = i * 192 + c * 64 + y * 8
                    let source = Array(plain[row..<(row + 8)])
                    let out = Array(flipped[row..<(row + 8)])
                    XCTAssertEqual(out, d.flip ? source.reversed() : source)
                }
            }
        }
        XCTAssertTrue((16...48).contains(flips), "\(flips) flips out of 64")
    }

    func testCropShiftsContentExactly() {
        // One channel, mean 0, std 1: output = pixel / 255, pixel = 1 + 8·y + x, padding = 0.
        let n = 300
        let image = (0..<64).map { UInt8(1 + $0) }
        let ds = ImageDataset(
            name: "ramp", channels: 1, height: 8, width: 8, numClasses: 1,
            pixels: Array([[UInt8]](repeating: image, count: n).joined()),
            labels: [Int32](repeating: 0, count: n), mean: [0], std: [1])
        for aug in [Augmentation(padCrop: 3, horizontalFlip: false), .standard] {
            let (out, _) = batch(ds, Array(0..<n), aug, seed: 9, epoch: 4)
            var shifts = Set<[Int]>()
            for i in 0..<n {
                let d = aug.draw(seed: 9, epoch: 4, index: i)
                shifts.insert([d.shiftY, d.shiftX])
                for y in 0..<8 {
                    for x in 0..<8 {
                        let cx = d.flip ? 7 - x : x
                        let sy = y + d.shiftY
                        let sx = cx + d.shiftX
                        let inside = (0..<8).contains(sy) && (0..<8).contains(sx)
                        let expected: Float = inside ? Float(1 + 8 * sy + sx) / 255 : 0
                        XCTAssertEqual(out[i * 64 + y * 8 + x], expected, "sample \(i) (\(y),\(x))")
                    }
                }
            }
            XCTAssertGreaterThan(shifts.count, 40)
        }
        // Offsets are uniform in 0...2·pad per axis (shift −pad...pad), flips are fair.
        let aug4 = Augmentation.standard
        var histY = [Int](repeating: 0, count: 9)
        var histX = [Int](repeating: 0, count: 9)
        var flips = 0
        let draws = 9000
        for i in 0..<draws {
            let d = aug4.draw(seed: 2, epoch: 1, index: i)
            histY[d.shiftY + 4] += 1
            histX[d.shiftX + 4] += 1
            if d.flip { flips += 1 }
        }
        for h in histY + histX { XCTAssertTrue((850...1150).contains(h), "\(histY) \(histX)") }
        XCTAssertTrue((4200...4800).contains(flips), "\(flips) flips of \(draws)")

        // A hand-checked case: source offset (+1, −2), i.e. content moves up 1 and right 2.
        let aug = Augmentation(padCrop: 2, horizontalFlip: false)
        let i = (0..<n).first {
            aug.draw(seed: 1, epoch: 0, index: $0) == .init(shiftY: 1, shiftX: -2, flip: false)
        }!
        let (out, _) = batch(ds, [i], aug, seed: 1, epoch: 0)
        XCTAssertEqual(Array(out[0..<4]), [0, 0, 9 / 255, 10 / 255])  // row 0 ← input row 1
        XCTAssertEqual(out[7 * 8 + 7], 0)  // row 7 ← input row 8: padding
        XCTAssertEqual(out[6 * 8 + 7], Float(1 + 8 * 7 + 5) / 255)
    }

    func testPaddingNormalizesLikeZeroPixels() {
        let ds = randomDataset(n: 50)
        let aug = Augmentation(padCrop: 8, horizontalFlip: false)
        let i = (0..<50).first { aug.draw(seed: 3, epoch: 0, index: $0).shiftY == 8 }!
        let (out, _) = batch(ds, [i], aug)  // crop window entirely in the padding
        for c in 0..<3 {
            let pad = (0 - ds.mean[c]) / ds.std[c]
            XCTAssertEqual(
                Array(out[(c * 64)..<((c + 1) * 64)]), [Float](repeating: pad, count: 64))
        }
    }

    func testSameSampleSameOutputWhateverTheBatch() {
        let ds = randomDataset()
        let (a, _) = batch(ds, [5, 2, 9], .standard, seed: 8, epoch: 3)
        let (b, _) = batch(ds, [9, 7, 5, 1], .standard, seed: 8, epoch: 3)
        XCTAssertEqual(Array(a[0..<192]), Array(b[384..<576]))  // sample 5
        XCTAssertEqual(Array(a[384..<576]), Array(b[0..<192]))  // sample 9
        let all = Array(0..<20)
        let (e3, _) = batch(ds, all, .standard, seed: 8, epoch: 3)
        let (e4, _) = batch(ds, all, .standard, seed: 8, epoch: 4)
        let (s9, _) = batch(ds, all, .standard, seed: 9, epoch: 3)
        XCTAssertNotEqual(e3, e4, "another epoch draws other crops")
        XCTAssertNotEqual(e3, s9, "another seed draws other crops")
    }

    func testRankBatchesConcatenateToTheOneRankBatch() throws {
        let ds = randomDataset(n: 40)
        let one = try Sampler(
            datasetCount: 40, globalBatch: 12, rank: 0, worldSize: 1, seed: 5, shuffle: true)
        for step in 0..<one.stepsPerEpoch {
            let (whole, wholeLabels) = batch(
                ds, one.rankBatch(epoch: 2, step: step), .standard, epoch: 2)
            var joined: [Float] = []
            var joinedLabels: [Int32] = []
            for r in 0..<4 {
                let s = try Sampler(
                    datasetCount: 40, globalBatch: 12, rank: r, worldSize: 4, seed: 5, shuffle: true
                )
                let (part, partLabels) = batch(
                    ds, s.rankBatch(epoch: 2, step: step), .standard, epoch: 2)
                joined += part
                joinedLabels += partLabels
            }
            XCTAssertEqual(joined, whole)
            XCTAssertEqual(joinedLabels, wholeLabels)
        }
    }
}
