// Crafted image data: a JPEG header claiming 65500×65500 pixels, JPEGs that decode only with a
// libjpeg-turbo warning, and packed indexes naming shards outside their folder. Each is a bad
// image per `bad_images` or a one-line error, never gigabytes allocated or a file read from
// elsewhere.

import CSGDCore
import CSGDData
import CSGDTestSupport
import Foundation
import XCTest

final class HostileImageTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try makeScratchDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    // MARK: - crafted JPEGs

    /// A small RGB JPEG from libjpeg-turbo (baseline: one SOF0 marker).
    func smallJPEG(width: Int = 40, height: Int = 30) throws -> [UInt8] {
        try JPEGCodec().encode(
            SyntheticImages.pattern(width: width, height: height, label: 1, seed: 3),
            width: width, height: height, layout: .rgb, quality: 90)
    }

    /// `jpeg` with its SOF0 header claiming `width × height`.
    func claiming(_ jpeg: [UInt8], width: Int, height: Int) -> [UInt8] {
        guard let out = jpegClaimingSize(jpeg, width: width, height: height) else {
            XCTFail("no SOF0 marker")
            return jpeg
        }
        return out
    }

    /// `jpeg` with junk bytes before its SOS marker: libjpeg-turbo decodes the whole image but
    /// warns "Corrupt JPEG data: 4 extraneous bytes before marker 0xda".
    func withExtraneousBytes(_ jpeg: [UInt8]) -> [UInt8] {
        guard
            let sos = (0..<(jpeg.count - 1)).first(where: {
                jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xDA
            })
        else {
            XCTFail("no SOS marker")
            return jpeg
        }
        return Array(jpeg[..<sos]) + [0x12, 0x34, 0x56, 0x78] + Array(jpeg[sos...])
    }

    /// `jpeg` with 64 junk bytes before its final EOI marker: the header and every scan line
    /// decode, then libjpeg-turbo warns "Corrupt JPEG data: N extraneous bytes before marker
    /// 0xd9" (before TJFLAG_STOPONWARNING such a file was trained on).
    func withTrailingJunk(_ jpeg: [UInt8]) -> [UInt8] {
        Array(jpeg.dropLast(2)) + [UInt8](repeating: 0x5A, count: 64) + [0xFF, 0xD9]
    }

    func testHeaderClaimingGigapixelsIsRefusedBeforeDecoding() throws {
        let codec = JPEGCodec()
        let bomb = claiming(try smallJPEG(), width: 65500, height: 65500)
        let head = try bomb.withUnsafeBytes { try codec.header($0) }
        XCTAssertEqual([head.width, head.height], [65500, 65500])
        let t0 = Date()
        for scale in [JPEGScale.one, JPEGScale(num: 1, denom: 8)] {
            XCTAssertThrowsError(try bomb.withUnsafeBytes { try codec.decode($0, scale: scale) }) {
                let message = ($0 as? JPEGError)?.message ?? ""
                XCTAssertTrue(message.contains("65500×65500"), message)
                XCTAssertTrue(message.contains("max_image_pixels"), message)
            }
        }
        // Refused from the header: a 4.3-gigapixel decode would take many seconds.
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1)
        // The cap is the parameter: exactly at it decodes, one pixel under refuses.
        let ok = try smallJPEG()
        XCTAssertEqual(
            try ok.withUnsafeBytes { try codec.decode($0, maxPixels: 40 * 30) }.width, 40)
        XCTAssertThrowsError(
            try ok.withUnsafeBytes { try codec.decode($0, maxPixels: 40 * 30 - 1) })
    }

    func testDecoderWarningsAreErrors() throws {
        let codec = JPEGCodec()
        let good = try smallJPEG()
        let cases: [(String, [UInt8])] = [
            ("extraneous bytes in the header", withExtraneousBytes(good)),
            ("extraneous bytes at the end", withTrailingJunk(good)),
            ("truncated", Array(good.prefix(good.count - 40))),
        ]
        for (name, bytes) in cases {
            XCTAssertThrowsError(try bytes.withUnsafeBytes { try codec.decode($0) }, name) {
                XCTAssertTrue($0 is JPEGError, name)
            }
        }
        // The last two pass the header: only the full decode notices.
        for (name, bytes) in cases.dropFirst() {
            XCTAssertNoThrow(try bytes.withUnsafeBytes { try codec.header($0) }, name)
        }
    }

    /// A folder of 2 classes × 4 images of 90×70, with record 6 (class 1) replaced by `bytes`.
    func folder(victim bytes: [UInt8]) throws -> (ImageFolderDataset, String) {
        let root = dir + "/train-\(UUID().uuidString)"
        try SyntheticImages.writeImageFolder(
            root: root, classes: 2, perClass: 4, width: 90, height: 70, seed: 4)
        let victim = root + "/class_001/img_00002.jpg"
        writeBytes(bytes, to: victim)
        return (try ImageFolderDataset.open(root), victim)
    }

    func loader(
        _ ds: ImageFolderDataset, policy: BadImagePolicy,
        maxPixels: Int = JPEGCodec.defaultMaxPixels
    ) -> ImageBatchLoader {
        var transform = ImageTransform.train(size: 32)
        transform.maxPixels = maxPixels
        return ImageBatchLoader(
            dataset: ds, transform: transform, batches: [[0, 1, 2, 3], [4, 5, 6, 7]], seed: 7,
            epoch: 0, workers: 2, prefetch: 2, policy: policy)
    }

    func testBadImagesFailNamingTheFileOrAreSkippedAndCounted() throws {
        let good = try smallJPEG()
        let cases: [(name: String, bytes: [UInt8], needle: String)] = [
            ("65500×65500 header", claiming(good, width: 65500, height: 65500), "65500×65500"),
            ("extraneous bytes in the header", withExtraneousBytes(good), "extraneous bytes"),
            ("extraneous bytes at the end", withTrailingJunk(good), "extraneous bytes"),
            ("truncated", Array(good.prefix(good.count - 40)), "JPEG"),
        ]
        for (name, bytes, needle) in cases {
            let (ds, victim) = try folder(victim: bytes)
            let failing = loader(ds, policy: .fail)
            XCTAssertNoThrow(try failing.next(), name)
            assertCSGDError([victim, needle]) { _ = try failing.next() }
            failing.close()
            let skipping = loader(ds, policy: .skip)
            for _ in 0..<2 { XCTAssertNoThrow(try skipping.next(), name) }
            XCTAssertEqual(skipping.skippedImages, [victim], name)
        }
    }

    func testMaxImagePixelsIsTheLoadersCap() throws {
        let (ds, _) = try folder(victim: try smallJPEG(width: 90, height: 70))
        let tight = loader(ds, policy: .skip, maxPixels: 90 * 70 - 1)
        XCTAssertThrowsError(try tight.next())  // every image of batch 0 is over the cap
        tight.close()
        let exact = loader(ds, policy: .fail, maxPixels: 90 * 70)
        for _ in 0..<2 { XCTAssertNoThrow(try exact.next()) }
    }

    // MARK: - packed index shard names

    /// A packed split of 2 classes × 3 images; returns its folder.
    func packed() throws -> String {
        let src = dir + "/src-\(UUID().uuidString)"
        try SyntheticImages.writeImageFolder(
            root: src, classes: 2, perClass: 3, width: 50, height: 40, seed: 2)
        let out = dir + "/packed-\(UUID().uuidString)"
        _ = try ImageFolderPacker.pack(source: src, output: out, shardBytes: 1 << 20)
        return out
    }

    /// `index.tsv` of `folder` with `edit` applied to its text.
    func editIndex(_ folder: String, _ edit: (String) -> String) throws {
        let path = folder + "/index.tsv"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try edit(text).write(toFile: path, atomically: true, encoding: .utf8)
    }

    func testShardsMustBePlainFilesInsideThePackedFolder() throws {
        let base = try packed()
        XCTAssertEqual(try ImageFolderDataset.open(base).count, 6)  // the normal form loads
        let index = try String(contentsOfFile: base + "/index.tsv", encoding: .utf8)
        let lines = index.split(separator: "\n")
        let shardLine = lines.firstIndex { $0.hasPrefix("shard\t") }! + 1
        let shard = String(lines[shardLine - 1].split(separator: "\t")[1])
        let size =
            try FileManager.default.attributesOfItem(atPath: base + "/" + shard)[.size]
            as! Int
        // Sizes match, so only the name or where it resolves can stop these.
        let outside = dir + "/outside.bin"
        try FileManager.default.copyItem(atPath: base + "/" + shard, toPath: outside)
        let names = [
            "../outside.bin", outside, "a/b", "..", ".", "", "x..y", "sub/../" + shard, "link.bin",
            "fifo.bin", "dir.bin",
        ]
        for name in names {
            let folder = try packed()
            try FileManager.default.createSymbolicLink(
                atPath: folder + "/link.bin", withDestinationPath: outside)
            XCTAssertEqual(mkfifo(folder + "/fifo.bin", 0o600), 0)
            try FileManager.default.createDirectory(
                atPath: folder + "/dir.bin", withIntermediateDirectories: false)
            try editIndex(folder) {
                $0.replacingOccurrences(
                    of: "shard\t\(shard)\t\(size)\n", with: "shard\t\(name)\t\(size)\n")
            }
            let t0 = Date()
            assertCSGDError(["index.tsv:\(shardLine)", "shard '\(name)'"]) {
                _ = try ImageFolderDataset.open(folder)
            }
            XCTAssertLessThan(Date().timeIntervalSince(t0), 5, name)
        }
        // A symbolic link that stays inside the folder is fine.
        let folder = try packed()
        try FileManager.default.moveItem(atPath: folder + "/" + shard, toPath: folder + "/real.bin")
        try FileManager.default.createSymbolicLink(
            atPath: folder + "/" + shard, withDestinationPath: "real.bin")
        XCTAssertEqual(try ImageFolderDataset.open(folder).count, 6)
    }

    func testRecordOffsetsNearIntMaxAreBadLinesNotOverflows() throws {
        let folder = try packed()
        try editIndex(folder) {
            $0.replacingOccurrences(
                of: "\nrecord\t0\t0\t", with: "\nrecord\t0\t\(Int.max)\t")
        }
        assertCSGDError(["index.tsv:", "bad record line"]) {
            _ = try ImageFolderDataset.open(folder)
        }
    }
}
