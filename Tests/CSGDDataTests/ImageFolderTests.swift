// The ImageNet input pipeline: JPEG decoding (RGB, gray, CMYK, truncated files), the
// torchvision crop geometry against hand-computed boxes, DCT-scale choice, resampling,
// worker-count independence of the batches, packed == folder form, and bad folders.

import CSGDCore
import CSGDData
import CSGDTestSupport
import Foundation
import XCTest

final class ImageFolderTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeScratchDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    // MARK: - decoding

    func testDecodedJPEGMatchesSourcePixels() throws {
        let codec = JPEGCodec()
        let (w, h) = (64, 48)
        let src = SyntheticImages.pattern(width: w, height: h, label: 3, seed: 5)
        let jpeg = try codec.encode(
            src, width: w, height: h, layout: .rgb, quality: 98, fullChroma: true)
        let image = try jpeg.withUnsafeBytes { try codec.decode($0) }
        XCTAssertEqual(image.width, w)
        XCTAssertEqual(image.height, h)
        var sum = 0
        var worst = 0
        for (a, b) in zip(src, image.pixels) {
            let d = abs(Int(a) - Int(b))
            sum += d
            worst = max(worst, d)
        }
        let mean = Double(sum) / Double(src.count)
        XCTAssertLessThan(mean, 1.5, "mean |Δ| \(mean)")
        XCTAssertLessThan(worst, 16, "max |Δ| \(worst)")
    }

    func testGrayscaleIsExpandedToThreeEqualChannels() throws {
        let codec = JPEGCodec()
        let (w, h) = (40, 30)
        let rgb = SyntheticImages.pattern(width: w, height: h, label: 1, seed: 2)
        let gray = (0..<(w * h)).map { rgb[3 * $0] }
        let jpeg = try codec.encode(gray, width: w, height: h, layout: .gray, quality: 98)
        XCTAssertTrue(try jpeg.withUnsafeBytes { try codec.header($0) }.isGray)
        let image = try jpeg.withUnsafeBytes { try codec.decode($0) }
        var sum = 0
        for p in 0..<(w * h) {
            let px = image.pixels[(3 * p)..<(3 * p + 3)]
            XCTAssertEqual(Set(px).count, 1, "pixel \(p) channels \(Array(px))")
            sum += abs(Int(px.first!) - Int(gray[p]))
        }
        XCTAssertLessThan(Double(sum) / Double(w * h), 1.5)
    }

    func testCMYKIsConvertedToRGB() throws {
        let codec = JPEGCodec()
        let (w, h) = (32, 32)
        let rgb = SyntheticImages.pattern(width: w, height: h, label: 2, seed: 9)
        // Inverted CMYK with K = 255 (no black ink) converts back to R = C, G = M, B = Y.
        var cmyk = [UInt8]()
        for p in 0..<(w * h) { cmyk += [rgb[3 * p], rgb[3 * p + 1], rgb[3 * p + 2], 255] }
        let jpeg = try codec.encode(
            cmyk, width: w, height: h, layout: .cmyk, quality: 98, fullChroma: true)
        XCTAssertTrue(try jpeg.withUnsafeBytes { try codec.header($0) }.isCMYK)
        let image = try jpeg.withUnsafeBytes { try codec.decode($0) }
        let mean =
            Double(zip(rgb, image.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +))
            / Double(rgb.count)
        XCTAssertLessThan(mean, 2.0)
    }

    func testScaledDecodingKeepsTheRequestedSize() throws {
        let codec = JPEGCodec()
        let src = SyntheticImages.pattern(width: 200, height: 150, label: 0, seed: 1)
        let jpeg = try codec.encode(src, width: 200, height: 150, layout: .rgb, quality: 90)
        let half = try jpeg.withUnsafeBytes {
            try codec.decode($0, scale: JPEGScale(num: 1, denom: 2))
        }
        XCTAssertEqual([half.width, half.height], [100, 75])
        let eighth = try jpeg.withUnsafeBytes {
            try codec.decode($0, scale: JPEGScale(num: 1, denom: 8))
        }
        XCTAssertEqual([eighth.width, eighth.height], [25, 19])  // rounded up, as TJSCALED
    }

    // MARK: - geometry

    /// Scripted draws: `uniform` and `below` return the given values in order.
    func box(
        _ w: Int, _ h: Int, uniforms: [Double], belows: [Int] = [], asked: inout [Int]
    ) -> CropBox {
        var u = uniforms[...]
        var b = belows[...]
        var bounds: [Int] = []
        let r = CropGeometry.randomResizedCrop(
            width: w, height: h, uniform: { u.popFirst()! },
            below: { n in
                bounds.append(n)
                return b.popFirst()!
            })
        asked = bounds
        return r
    }

    func testRandomResizedCropBoxesMatchHandComputedOnes() {
        var asked: [Int] = []
        // 500×375, area fraction 0.08 + 0.92·0.5 = 0.54 → 101250 px², log-ratio midpoint → 1:
        // w = h = round(√101250 = 318.2) = 318; top ∈ 0..<58, left ∈ 0..<183.
        XCTAssertEqual(
            box(500, 375, uniforms: [0.5, 0.5], belows: [10, 20], asked: &asked),
            CropBox(x: 20, y: 10, width: 318, height: 318))
        XCTAssertEqual(asked, [58, 183])
        // Ratio at the top end (u = 1 → 4/3), area fraction 0.08: 15000·4/3 = 20000 → w = 141
        // (141.42), h = round(√11250 = 106.07) = 106.
        XCTAssertEqual(
            box(500, 375, uniforms: [0, 1], belows: [0, 359], asked: &asked),
            CropBox(x: 359, y: 0, width: 141, height: 106))
        XCTAssertEqual(asked, [270, 360])
        // Whole area at ratio 4/3 never fits a 100×100 image (w = 115): after 10 attempts the
        // fallback takes the whole image (its ratio 1 lies inside 3/4…4/3), no integer draws.
        XCTAssertEqual(
            box(100, 100, uniforms: Array(repeating: 1, count: 20), asked: &asked),
            CropBox(x: 0, y: 0, width: 100, height: 100))
        XCTAssertEqual(asked, [])
        // Too wide (1000×300): full height, w = round(300·4/3) = 400, centred: left 300.
        XCTAssertEqual(
            box(1000, 300, uniforms: Array(repeating: 1, count: 20), asked: &asked),
            CropBox(x: 300, y: 0, width: 400, height: 300))
        // Too tall (300×1001): full width, h = round(300/0.75) = 400, top (1001−400)//2 = 300.
        XCTAssertEqual(
            box(300, 1001, uniforms: Array(repeating: 1, count: 20), asked: &asked),
            CropBox(x: 0, y: 300, width: 300, height: 400))
        // A failed attempt is followed by a fitting one: the second attempt's draws are used.
        XCTAssertEqual(
            box(100, 100, uniforms: [1, 1, 0.5, 0.5], belows: [3, 4], asked: &asked),
            CropBox(x: 4, y: 3, width: 73, height: 73))  // round(√5400 = 73.48)
    }

    func testResizeCenterCropBoxes() {
        // 500×375 → Resize(256): 341×256 (⌊256·500/375⌋), crop 224 at left round(58.5) = 58
        // (half to even), top 16; mapped back through ×500/341 and ×375/256.
        let b = CropGeometry.resizeCenterCrop(width: 500, height: 375, resize: 256, crop: 224)
        XCTAssertEqual(b.x, 58 * 500 / 341.0, accuracy: 1e-9)
        XCTAssertEqual(b.y, 16 * 375 / 256.0, accuracy: 1e-9)
        XCTAssertEqual(b.width, 224 * 500 / 341.0, accuracy: 1e-9)
        XCTAssertEqual(b.height, 224 * 375 / 256.0, accuracy: 1e-9)
        // Portrait 300×400 at crop 64: resize round(64·256/224) = 73 → 73×97; top 16 (16.5 →
        // 16), left 4 (4.5 → 4).
        XCTAssertEqual(ImageTransform.evalResize(64), 73)
        XCTAssertEqual(ImageTransform.evalResize(224), 256)
        let p = CropGeometry.resizeCenterCrop(width: 300, height: 400, resize: 73, crop: 64)
        XCTAssertEqual(p.x, 4 * 300 / 73.0, accuracy: 1e-9)
        XCTAssertEqual(p.y, 16 * 400 / 97.0, accuracy: 1e-9)
        XCTAssertEqual(p.width, 64 * 300 / 73.0, accuracy: 1e-9)
        XCTAssertEqual(p.height, 64 * 400 / 97.0, accuracy: 1e-9)
    }

    func testLargestDCTReductionThatKeepsTheCropAtOutputSize() {
        XCTAssertEqual(
            JPEGScale.available,
            [
                JPEGScale(num: 1, denom: 8), JPEGScale(num: 1, denom: 4),
                JPEGScale(num: 1, denom: 2), .one,
            ])
        // The eval box of a 500×375 image (328×328) for 224: 1/2 would give 164 < 224.
        XCTAssertEqual(
            JPEGScale.largestReduction(
                boxWidth: 328.4, boxHeight: 328.1, outWidth: 224, outHeight: 224), .one)
        // 500×460 → 1/2 gives 250×230 ≥ 224; 1/4 would give 125.
        XCTAssertEqual(
            JPEGScale.largestReduction(
                boxWidth: 500, boxHeight: 460, outWidth: 224, outHeight: 224),
            JPEGScale(num: 1, denom: 2))
        XCTAssertEqual(
            JPEGScale.largestReduction(
                boxWidth: 2000, boxHeight: 1800, outWidth: 224, outHeight: 224),
            JPEGScale(num: 1, denom: 8))
        // The 64-pixel crops of the end-to-end test: a 318-pixel box decodes at 1/4 (80 ≥ 64).
        XCTAssertEqual(
            JPEGScale.largestReduction(boxWidth: 318, boxHeight: 318, outWidth: 64, outHeight: 64),
            JPEGScale(num: 1, denom: 4))
    }

    func testResamplingTheWholeImageAtItsSizeIsTheIdentity() {
        let src = SyntheticImages.pattern(width: 23, height: 17, label: 4, seed: 3)
        let image = RGBImage(width: 23, height: 17, pixels: src)
        XCTAssertEqual(
            resample(image, box: CropBox(x: 0, y: 0, width: 23, height: 17), width: 23, height: 17),
            src)
        // A 2× shrink of a constant image stays constant (weights sum to 1).
        let flat = RGBImage(width: 20, height: 20, pixels: [UInt8](repeating: 77, count: 1200))
        XCTAssertEqual(
            Set(
                resample(
                    flat, box: CropBox(x: 0, y: 0, width: 20, height: 20), width: 10, height: 10)),
            [77])
    }

    // MARK: - loader

    /// Every batch of a loader over `batches`.
    func drain(_ loader: BatchStream, count: Int, floats: Int) throws -> ([[Float]], [[Int32]]) {
        var images: [[Float]] = []
        var labels: [[Int32]] = []
        for _ in 0..<count {
            let b = try loader.next()
            images.append(Array(UnsafeBufferPointer(start: b.images, count: b.count * floats)))
            labels.append(Array(UnsafeBufferPointer(start: b.labels, count: b.count)))
        }
        return (images, labels)
    }

    func makeFolder(classes: Int = 3, perClass: Int = 6) throws -> String {
        let root = dir + "/train"
        try SyntheticImages.writeImageFolder(
            root: root, classes: classes, perClass: perClass, width: 90, height: 70, seed: 4)
        return root
    }

    func loader(
        _ ds: ImageFolderDataset, workers: Int, prefetch: Int = 2, epoch: Int = 0,
        policy: BadImagePolicy = .fail, batches: [[Int]]
    ) -> ImageBatchLoader {
        ImageBatchLoader(
            dataset: ds, transform: .train(size: 32), batches: batches, seed: 7, epoch: epoch,
            workers: workers, prefetch: prefetch, policy: policy)
    }

    func testSameSeedEpochAndRankGiveTheSameBatchesWhateverTheWorkerCount() throws {
        let ds = try ImageFolderDataset.open(try makeFolder())
        XCTAssertEqual(ds.classes, ["class_000", "class_001", "class_002"])
        XCTAssertEqual(ds.count, 18)
        let sampler = try Sampler(
            datasetCount: ds.count, globalBatch: 6, rank: 1, worldSize: 2, seed: 7, shuffle: true)
        let order = sampler.globalOrder(epoch: 1)
        let batches = (0..<sampler.stepsPerEpoch).map { sampler.rankBatch(order: order, step: $0) }
        let floats = 3 * 32 * 32
        let one = try drain(
            loader(ds, workers: 1, prefetch: 1, epoch: 1, batches: batches), count: 3,
            floats: floats)
        let three = try drain(
            loader(ds, workers: 3, prefetch: 3, epoch: 1, batches: batches), count: 3,
            floats: floats)
        XCTAssertEqual(one.0, three.0)  // bitwise: Float arrays compare exactly
        XCTAssertEqual(one.1, three.1)
        XCTAssertEqual(one.1, batches.map { $0.map { ds.records[$0].label } })
        // Non-vacuity: another epoch crops differently.
        let other = try drain(
            loader(ds, workers: 2, epoch: 2, batches: batches), count: 3, floats: floats)
        XCTAssertNotEqual(one.0, other.0)
        // Every value is a normalized byte.
        let lo = (0 - 0.485) / 0.229 as Float
        XCTAssertTrue(one.0.joined().allSatisfy { $0.isFinite && $0 >= lo - 1e-4 && $0 <= 2.7 })
    }

    func testPackedFormGivesTheSameSamplesBitwise() throws {
        let root = try makeFolder(classes: 2, perClass: 5)
        try SyntheticImages.writeImageFolder(
            root: dir + "/val", classes: 2, perClass: 2, width: 50, height: 80, seed: 8)
        // ~3 images per shard, so records span several shards.
        let summaries = try ImageFolderPacker.pack(
            source: dir, output: dir + "/packed", shardBytes: 3 * 2600)
        XCTAssertEqual(summaries.map(\.images), [10, 4])
        XCTAssertGreaterThan(summaries[0].shards, 1)
        let folder = try ImageFolderDataset.open(root)
        let packed = try ImageFolderDataset.open(dir + "/packed/train")
        XCTAssertTrue(packed.isPacked)
        XCTAssertEqual(packed.classes, folder.classes)
        XCTAssertEqual(packed.records.map(\.label), folder.records.map(\.label))
        XCTAssertEqual(packed.records.map(\.path), folder.records.map(\.path))
        for i in 0..<folder.count { XCTAssertEqual(try packed.bytes(i), try folder.bytes(i)) }
        let batches = [[3, 0, 9, 4], [1, 2, 5, 8]]
        let floats = 3 * 32 * 32
        XCTAssertEqual(
            try drain(loader(folder, workers: 2, batches: batches), count: 2, floats: floats).0,
            try drain(loader(packed, workers: 2, batches: batches), count: 2, floats: floats).0)
        XCTAssertEqual(try ImageFolderDataset.open(dir + "/packed/val").count, 4)
    }

    func testTruncatedJPEGIsReportedWithItsPathOrSkippedAndCounted() throws {
        let root = try makeFolder(classes: 2, perClass: 4)
        let victim = root + "/class_001/img_00002.jpg"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: victim))
        let ds = try ImageFolderDataset.open(root)
        let batches = [[0, 1, 2, 3], [4, 5, 6, 7]]  // record 6 is the truncated file
        let failing = loader(ds, workers: 2, batches: batches)
        _ = try failing.next()
        assertCSGDError([victim]) { _ = try failing.next() }
        let skipping = loader(ds, workers: 2, policy: .skip, batches: batches)
        let (_, labels) = try drain(skipping, count: 2, floats: 3 * 32 * 32)
        XCTAssertEqual(skipping.skippedImages, [victim])
        XCTAssertEqual(labels[1], [1, 1, 1, 1])  // replaced by record 7, same class
        // A file that is not a JPEG at all is reported the same way.
        try Data("not a jpeg".utf8).write(to: URL(fileURLWithPath: victim))
        let junk = loader(ds, workers: 1, batches: [[6]])
        assertCSGDError([victim]) { _ = try junk.next() }
    }

    /// A JPEG whose header claims 0×0 fails inside TurboJPEG's header read; the decoder used to
    /// stay mid-header, so every later image of that worker failed too and `skip` gave up after
    /// 64 "consecutive" unreadable images. Now only the one file is skipped.
    func testOneZeroSizeHeaderIsSkippedAloneAndTheRestDecode() throws {
        let root = try makeFolder(classes: 2, perClass: 45)
        let victim = root + "/class_000/img_00003.jpg"
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: victim)))
        let zero = try XCTUnwrap(jpegClaimingSize(good, width: 0, height: 0))
        try Data(zero).write(to: URL(fileURLWithPath: victim))
        let ds = try ImageFolderDataset.open(root)
        let batches = (0..<9).map { b in (0..<10).map { b * 10 + $0 } }
        let skipping = loader(ds, workers: 1, policy: .skip, batches: batches)
        _ = try drain(skipping, count: 9, floats: 3 * 32 * 32)
        XCTAssertEqual(skipping.skippedImages, [victim])
        let failing = loader(ds, workers: 1, batches: [[3]])
        assertCSGDError([victim]) { _ = try failing.next() }
    }

    /// A FIFO named like a JPEG is refused at once (it used to block the loader forever) and a
    /// sparse file larger than `maxImageBytes` is refused before anything is allocated; under
    /// `skip` both are skipped and counted.
    func testFIFOAndHugeSparseFilesAreBadImagesNotHangsOrAborts() throws {
        let root = try makeFolder(classes: 2, perClass: 4)
        let fifo = root + "/class_000/img_00001.jpg"
        let huge = root + "/class_001/img_00002.jpg"
        unlink(fifo)
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        XCTAssertEqual(truncate(huge, off_t(ImageFolderDataset.maxImageBytes) * 12), 0)
        let ds = try ImageFolderDataset.open(root)
        assertCSGDError([fifo, "not a regular file"]) {
            _ = try loader(ds, workers: 1, batches: [[1]]).next()
        }
        assertCSGDError([huge, "bytes is more than"]) {
            _ = try loader(ds, workers: 1, batches: [[6]]).next()
        }
        let skipping = loader(
            ds, workers: 2, policy: .skip, batches: [[0, 1, 2, 3], [4, 5, 6, 7]])
        _ = try drain(skipping, count: 2, floats: 3 * 32 * 32)
        XCTAssertEqual(skipping.skippedImages.sorted(), [fifo, huge].sorted())
        // `pack` refuses both by name too.
        assertCSGDError([fifo]) {
            _ = try ImageFolderPacker.packSplit(
                source: root, output: dir + "/packed", shardBytes: 1 << 20)
        }
    }

    func testMissingFolderAndEmptyClassFolderNameThePath() throws {
        assertCSGDError([dir + "/nope"]) { _ = try ImageFolderDataset.open(dir + "/nope") }
        let root = try makeFolder(classes: 2, perClass: 1)
        try FileManager.default.createDirectory(
            atPath: root + "/class_zzz", withIntermediateDirectories: true)
        assertCSGDError([root + "/class_zzz"]) { _ = try ImageFolderDataset.open(root) }
        let none = dir + "/flat"
        try FileManager.default.createDirectory(atPath: none, withIntermediateDirectories: true)
        assertCSGDError([none]) { _ = try ImageFolderDataset.open(none) }
    }
}
