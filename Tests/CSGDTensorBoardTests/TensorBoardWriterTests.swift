// The TensorBoard writer without TensorBoard: CRC-32C against published check values, the
// TFRecord framing byte by byte and under every single-byte flip and every truncation, and an
// events file written and read back (name, version record, float32 values including 0, NaN
// and ±infinity, a second writer in the same second taking its own file). The `tensorboard`
// package reads our files in Tests/CSGDCLITests/TensorBoardCLITests.swift.

import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

@testable import CSGDTensorBoard

final class TensorBoardWriterTests: XCTestCase {
    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "csgd-tbw-\(UUID().uuidString)"
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testCRC32CMatchesPublishedCheckValues() {
        // The CRC catalogue's check value, and RFC 3720 (iSCSI) appendix B.4's vectors.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }), 0x113F_DB5C)
        // The mask: rotate right by 15, add 0xa282ead8 (wrapping).
        XCTAssertEqual(CRC32C.masked(0), 0xA282_EAD8)
        XCTAssertEqual(CRC32C.masked(0xE306_9283), 0xC78A_B0E5)  // tensorboard's masked_crc32c
        XCTAssertEqual(CRC32C.masked(0x0000_8000), 0x0000_0001 &+ 0xA282_EAD8)
    }

    func testFramingLayoutAndRoundTrip() throws {
        let data = Array("hello".utf8)
        let f = TFRecord.frame(data)
        XCTAssertEqual(f.count, data.count + TFRecord.overhead)
        XCTAssertEqual(Array(f[0..<8]), [5, 0, 0, 0, 0, 0, 0, 0])
        let lengthCRC = CRC32C.maskedChecksum(f[0..<8])
        XCTAssertEqual(
            Array(f[8..<12]), (0..<4).map { UInt8(truncatingIfNeeded: lengthCRC >> (8 * $0)) })
        XCTAssertEqual(Array(f[12..<17]), data)
        let dataCRC = CRC32C.maskedChecksum(data)
        XCTAssertEqual(
            Array(f[17..<21]), (0..<4).map { UInt8(truncatingIfNeeded: dataCRC >> (8 * $0)) })
        let records: [[UInt8]] = [data, [], (0..<300).map { UInt8($0 % 251) }]
        let file = records.flatMap(TFRecord.frame)
        XCTAssertEqual(try TFRecord.records(in: file, name: "f"), records)
    }

    func testEveryFlippedByteAndEveryTruncationIsRefused() throws {
        let records: [[UInt8]] = [Array("brain.Event:2".utf8), [1, 2, 3, 4, 5, 6, 7]]
        let file = records.flatMap(TFRecord.frame)
        for i in file.indices {
            for bit in [0, 7] {
                var bad = file
                bad[i] ^= 1 << bit
                XCTAssertThrowsError(
                    try TFRecord.records(in: bad, name: "f"), "flip at \(i) bit \(bit)")
            }
        }
        let boundary = TFRecord.frame(records[0]).count
        for n in 1..<file.count where n != boundary {
            XCTAssertThrowsError(
                try TFRecord.records(in: Array(file[0..<n]), name: "f"), "cut at \(n)")
        }
        // A data flip names the file, the record and its offset.
        var bad = file
        bad[boundary + 14] ^= 0x10
        assertCSGDError(["f: record 1 at byte \(boundary)", "data CRC mismatch"]) {
            _ = try TFRecord.records(in: bad, name: "f")
        }
        // A length beyond the file is reported, not trusted.
        var long = TFRecord.frame([1, 2, 3])
        long[0] = 0xFF
        long[7] = 0xFF
        let crc = CRC32C.maskedChecksum(long[0..<8])
        for k in 0..<4 { long[8 + k] = UInt8(truncatingIfNeeded: crc >> (8 * k)) }
        assertCSGDError(["record 0 at byte 0", "claims"]) {
            _ = try TFRecord.records(in: long, name: "f")
        }
    }

    func testEventsFileNameVersionAndScalarsReadBack() throws {
        let w = EventFileWriter(directory: dir + "/tb")
        XCTAssertNil(w.path, "no file before the first write")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir))
        let values: [Double] = [0, -0.0, 1.5, 0.1, .nan, .infinity, -.infinity, 1e300, 3e-46]
        try w.write(
            step: 3, scalars: values.enumerated().map { ("t/\($0.offset)", $0.element) },
            wallTime: 1_764_162_000.25)
        try w.write(step: 1 << 40, scalars: [("train/loss", 0.5)], wallTime: 1_764_162_001)
        let path = try XCTUnwrap(w.path)
        let name = URL(fileURLWithPath: path).lastPathComponent
        XCTAssertEqual(name, "events.out.tfevents.1764162000." + EventFileWriter.hostName())
        XCTAssertEqual(EventFileReader.files(in: dir + "/tb"), [path])
        let c = try EventFileReader.read(path)
        XCTAssertEqual(c.fileVersion, "brain.Event:2")
        XCTAssertEqual(c.scalars.count, values.count + 1)
        for (i, v) in values.enumerated() {
            let s = c.scalars[i]
            XCTAssertEqual(s.tag, "t/\(i)")
            XCTAssertEqual(s.step, 3)
            XCTAssertEqual(s.wallTime, 1_764_162_000.25)
            // float32 rounding of the double, bit for bit (NaN, −0 and the overflow included).
            XCTAssertEqual(s.value.bitPattern, Float(v).bitPattern, "t/\(i)")
        }
        XCTAssertEqual(
            c.scalars.last,
            ScalarEvent(step: 1 << 40, tag: "train/loss", value: 0.5, wallTime: 1_764_162_001))

        // A second job in the same second (a quick resume) gets its own file; the first is
        // left as it was.
        let before = try readWholeFile(path)
        let w2 = EventFileWriter(directory: dir + "/tb")
        try w2.write(step: 4, scalars: [("train/loss", 0.25)], wallTime: 1_764_162_000.9)
        XCTAssertEqual(w2.path, path + ".2")
        XCTAssertEqual(try readWholeFile(path), before)
        XCTAssertEqual(EventFileReader.files(in: dir + "/tb"), [path, path + ".2"])
        XCTAssertEqual(try EventFileReader.read(path + ".2").scalars.map(\.value), [0.25])
    }

    func testAnUnwritableFolderIsAOneLineError() throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let blocker = dir + "/not-a-folder"
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        let w = EventFileWriter(directory: blocker + "/tb")
        assertCSGDError(["cannot create the TensorBoard folder", blocker + "/tb"]) {
            try w.write(step: 1, scalars: [("train/loss", 1)])
        }
    }
}
