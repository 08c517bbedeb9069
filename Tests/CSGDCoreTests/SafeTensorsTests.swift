// Tests for the safetensors reader/writer: round trips, a byte-exact known file, every
// corruption path (each must name the file), and interoperability with Python readers.

import CSGDCore
import CSGDTestSupport
import Foundation
import XCTest

final class SafeTensorsTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "safetensors-tests-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// A file with one tensor of every dtype, an empty tensor and a scalar.
    private func sample() -> SafeTensorsFile {
        var f = SafeTensorsFile(metadata: ["step": "1234", "model": "resnet20", "é": "ü\"\\\n"])
        let w: [Float] = (0..<24).map { Float($0) * 0.25 - 3 }
        w.withUnsafeBufferPointer { f.add("conv1.weight", shape: [2, 3, 2, 2], floats: $0) }
        f.add("fc.bias", shape: [3], floats: [1.5, -0.0, .infinity])
        f.add("lr", shape: [], doubles: [0.05])
        f.add("rng.state", shape: [4], int64s: [0, -1, Int64.max, Int64(bitPattern: 0xDEAD_BEEF)])
        f.add("clusters", shape: [2, 2], int32s: [0, 1, 1, -7])
        f.add("empty", shape: [0, 5], floats: [])
        f.add("mask", shape: [5], uint8s: [0, 1, 255, 7, 9])
        return f
    }

    func testRoundTripThroughFile() throws {
        let f = sample()
        let path = dir + "/a.safetensors"
        try f.write(path: path)
        let g = try SafeTensorsFile.read(path: path)
        XCTAssertEqual(g, f)
        XCTAssertEqual(
            g.names, ["conv1.weight", "fc.bias", "lr", "rng.state", "clusters", "empty", "mask"])
        XCTAssertEqual(g.metadata, f.metadata)
        XCTAssertNil(g.metadata[SafeTensorsFile.checksumKey])
        XCTAssertEqual(try g.floats("conv1.weight"), (0..<24).map { Float($0) * 0.25 - 3 })
        XCTAssertEqual(g.shape("conv1.weight"), [2, 3, 2, 2])
        XCTAssertEqual(g.shape("lr"), [])
        XCTAssertNil(g.shape("nope"))
        let bias = try g.floats("fc.bias")
        XCTAssertEqual(bias[1].sign, .minus)
        XCTAssertEqual(bias[2], .infinity)
        XCTAssertEqual(try g.doubles("lr"), [0.05])
        XCTAssertEqual(try g.int64s("rng.state")[3], Int64(bitPattern: 0xDEAD_BEEF))
        XCTAssertEqual(try g.int32s("clusters"), [0, 1, 1, -7])
        XCTAssertEqual(try g.floats("empty"), [])
        XCTAssertEqual(try g.uint8s("mask"), [0, 1, 255, 7, 9])
        XCTAssertEqual(g.dtype("mask"), .u8)

        var dst = [Float](repeating: 0, count: 3)
        try dst.withUnsafeMutableBufferPointer { try g.copyFloats("fc.bias", into: $0) }
        XCTAssertEqual(dst[0], 1.5)

        // Same content → same bytes, and a read-then-write reproduces the file exactly.
        XCTAssertEqual(f.serialized(), sample().serialized())
        XCTAssertEqual(g.serialized(), try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(try SafeTensorsFile(serialized: f.serialized()), f)
    }

    func testWrongDtypeOrNameOrCountNamesTheFile() throws {
        let path = dir + "/b.safetensors"
        try sample().write(path: path)
        let g = try SafeTensorsFile.read(path: path)
        assertCSGDError([path, "clusters", "I32", "F32"]) { _ = try g.floats("clusters") }
        assertCSGDError([path, "no tensor named 'x'"]) { _ = try g.floats("x") }
        var dst = [Float](repeating: 0, count: 2)
        assertCSGDError([path, "fc.bias", "3 elements"]) {
            try dst.withUnsafeMutableBufferPointer { try g.copyFloats("fc.bias", into: $0) }
        }
    }

    /// Hand-computed bytes of a tiny file. Data: 1.0f = 3F800000, -2.0f = C0000000, and the
    /// int64 -3 = FFFFFFFFFFFFFFFD, all little-endian. FNV-1a-64 of those 16 bytes is
    /// bb40c6023012c612. The JSON is 174 bytes, padded with 2 spaces to 176 = 0xB0.
    func testByteExactTinyFile() throws {
        var f = SafeTensorsFile(metadata: ["epoch": "1"])
        f.add("w", shape: [2], floats: [1.0, -2.0])
        f.add("step", shape: [], int64s: [-3])
        let bytes = [UInt8](f.serialized())

        let json =
            #"{"__metadata__":{"csgd.checksum":"bb40c6023012c612","epoch":"1"},"#
            + #""w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
            + #""step":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}"#
        XCTAssertEqual(json.utf8.count, 174)
        var expected: [UInt8] = [0xB0, 0, 0, 0, 0, 0, 0, 0]
        expected += Array(json.utf8) + [0x20, 0x20]
        expected += [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0xC0]
        expected += [0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        XCTAssertEqual(bytes.count, 200)
        XCTAssertEqual(bytes, expected)
        XCTAssertEqual(String(decoding: bytes[8..<184], as: UTF8.self), json + "  ")
    }

    func testEmptyFileRoundTrips() throws {
        let f = SafeTensorsFile()
        let g = try SafeTensorsFile(serialized: f.serialized())
        XCTAssertEqual(g, f)
        XCTAssertEqual(g.names, [])
        XCTAssertEqual(f.serialized().count % 8, 0)
    }

    // MARK: - Corruption: every case is one line naming the file.

    private func writeSample() throws -> (path: String, bytes: [UInt8]) {
        let path = dir + "/c.safetensors"
        try sample().write(path: path)
        return (path, [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    private func put(_ bytes: [UInt8], _ path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    private func headerLength(_ bytes: [UInt8]) -> Int {
        Int(bytes[0..<8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    func testMissingFile() {
        let path = dir + "/missing.safetensors"
        assertCSGDError([path, "No such file"]) {
            _ = try SafeTensorsFile.read(path: path)
        }
    }

    func testFlippedDataByteIsAChecksumError() throws {
        var (path, bytes) = try writeSample()
        bytes[bytes.count - 3] ^= 0x10
        try put(bytes, path)
        assertCSGDError([path, "checksum mismatch (file corrupt or truncated)"]) {
            _ = try SafeTensorsFile.read(path: path)
        }
    }

    func testTruncatedFiles() throws {
        let (path, bytes) = try writeSample()
        let n = headerLength(bytes)
        for keep in [0, 5, 8, 8 + n / 2, 8 + n, bytes.count - 1] {
            try put(Array(bytes[0..<keep]), path)
            assertCSGDError([path]) { _ = try SafeTensorsFile.read(path: path) }
        }
        try put(Array(bytes[0..<(bytes.count - 1)]), path)
        assertCSGDError([path, "truncated"]) { _ = try SafeTensorsFile.read(path: path) }
        try put(bytes + [0], path)
        assertCSGDError([path, "data section"]) { _ = try SafeTensorsFile.read(path: path) }
    }

    func testBogusHeaderLength() throws {
        var (path, bytes) = try writeSample()
        bytes[5] = 0x01  // 2^40 + n
        try put(bytes, path)
        assertCSGDError([path, "header length", "larger than the file"]) {
            _ = try SafeTensorsFile.read(path: path)
        }
    }

    func testBadJSONAndBadDtype() throws {
        let (path, bytes) = try writeSample()
        let n = headerLength(bytes)
        var bad = bytes
        bad[8] = UInt8(ascii: "[")
        try put(bad, path)
        assertCSGDError([path, "not valid JSON"]) {
            _ = try SafeTensorsFile.read(path: path)
        }

        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        let bf16 = header.replacingOccurrences(of: #""dtype":"I32""#, with: #""dtype":"Q32""#)
        XCTAssertNotEqual(bf16, header)
        try put(Array(bytes[0..<8]) + Array(bf16.utf8) + Array(bytes[(8 + n)...]), path)
        assertCSGDError([path, "clusters", "unsupported dtype 'Q32'"]) {
            _ = try SafeTensorsFile.read(path: path)
        }
    }

    /// Handcrafted headers (no checksum) that break the offset rules.
    func testBadOffsets() throws {
        func file(_ json: String, data: Int) -> [UInt8] {
            var h = Array(json.utf8)
            h += [UInt8](repeating: 0x20, count: (8 - h.count % 8) % 8)
            var out = withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) }
            out += h + [UInt8](repeating: 0, count: data)
            return out
        }
        let cases: [(String, Int, String)] = [
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, 4, "needs 8"),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, 4, "out of range"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4, "truncated"),
            (
                #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"#
                    + #""b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "overlap"
            ),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, 8, "gap"),
            (#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#, 0, "shape"),
            (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, 4, "data_offsets"),
            (#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, 4, "missing dtype"),
            (#"{"__metadata__":{"k":1}}"#, 0, "not a string"),
            (#"[1,2]"#, 0, "not an object"),
        ]
        let path = dir + "/d.safetensors"
        for (json, data, why) in cases {
            try put(file(json, data: data), path)
            assertCSGDError([path, why]) { _ = try SafeTensorsFile.read(path: path) }
        }
        // Without a checksum, a valid foreign file is accepted (e.g. written by PyTorch).
        try put(file(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: 4), path)
        XCTAssertEqual(try SafeTensorsFile.read(path: path).floats("a"), [0])
    }

    func testAtomicWriteLeavesNoTempFiles() throws {
        let path = dir + "/sub/e.safetensors"
        try sample().write(path: path)
        try sample().write(path: path)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: dir + "/sub"),
            [
                "e.safetensors"
            ])
    }

    // MARK: - Interoperability with Python

    /// Independent reader in plain Python (json + struct): checks the format, not our code.
    func testPlainPythonReaderAgrees() throws {
        let path = dir + "/py.safetensors"
        try sample().write(path: path)
        let script = """
            import json, struct, sys
            b = open(sys.argv[1], 'rb').read()
            n = struct.unpack('<Q', b[:8])[0]
            h = json.loads(b[8:8 + n].decode('utf-8'))
            assert n % 8 == 0
            d = b[8 + n:]
            fmt = {'F32': 'f', 'F64': 'd', 'I64': 'q', 'I32': 'i', 'U8': 'B'}
            meta = h.pop('__metadata__')
            for k in sorted(h, key=lambda k: h[k]['data_offsets']):
                t = h[k]; s, e = t['data_offsets']
                cnt = (e - s) // struct.calcsize(fmt[t['dtype']])
                v = struct.unpack('<%d%s' % (cnt, fmt[t['dtype']]), d[s:e])
                print(k, t['dtype'], t['shape'], ' '.join(repr(x) for x in v))
            print('meta', meta['model'], meta['step'], len(meta['csgd.checksum']))
            """
        guard let out = runPython(["-c", script, path]) else {
            throw XCTSkip("\(Python.executable) not available")
        }
        let lines = out.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 8, out)
        guard lines.count == 8 else { return }
        XCTAssertEqual(lines[1], "fc.bias F32 [3] 1.5 -0.0 inf")
        XCTAssertEqual(lines[2], "lr F64 [] 0.05")
        XCTAssertEqual(lines[3], "rng.state I64 [4] 0 -1 9223372036854775807 3735928559")
        XCTAssertEqual(lines[4], "clusters I32 [2, 2] 0 1 1 -7")
        XCTAssertEqual(lines[5], "empty F32 [0, 5] ")
        XCTAssertEqual(lines[6], "mask U8 [5] 0 1 255 7 9")
        XCTAssertEqual(lines[7], "meta resnet20 1234 16")
        XCTAssertTrue(lines[0].hasPrefix("conv1.weight F32 [2, 3, 2, 2] -3.0 -2.75 "), lines[0])
    }

    /// The reference `safetensors` package, when installed (skipped otherwise): it reads every
    /// name, dtype, shape, value and metadata entry we wrote, and we read what it writes.
    func testSafetensorsPackageRoundTripsNamesShapesDtypesAndValues() throws {
        guard runPython(["-c", "import safetensors, numpy"]) != nil else {
            throw XCTSkip(
                "\(Python.executable) cannot import safetensors and numpy "
                    + "(run launch/setup-python.sh, or set CSGD_PYTHON)")
        }
        let f = sample()
        let path = dir + "/ref.safetensors"
        try f.write(path: path)
        let reader = """
            import json, sys
            from safetensors.numpy import load_file
            from safetensors import safe_open
            t = load_file(sys.argv[1])
            for k in sorted(t):
                v = t[k]
                print(k, v.dtype, list(v.shape), ' '.join(repr(x) for x in v.reshape(-1).tolist()))
            with safe_open(sys.argv[1], framework='numpy') as f:
                m = {k: v for k, v in f.metadata().items() if k != 'csgd.checksum'}
            print(json.dumps(m))
            """
        guard let out = runPython(["-c", reader, path]) else {
            return XCTFail("safetensors failed to load \(path)")
        }
        // What numpy must report, derived from our own file: name, dtype, shape, values.
        let numpyName: [SafeTensorsDType: String] = [
            .f32: "float32", .f64: "float64", .i64: "int64", .i32: "int32", .u8: "uint8",
        ]
        var expected: [String] = []
        for t in f.tensors.sorted(by: { $0.name < $1.name }) {
            let values: [String]
            switch t.dtype {
            case .f32: values = try f.floats(t.name).map { Double($0).description }
            case .f64: values = try f.doubles(t.name).map(\.description)
            case .i64: values = try f.int64s(t.name).map(\.description)
            case .i32: values = try f.int32s(t.name).map(\.description)
            case .u8: values = try f.uint8s(t.name).map(\.description)
            }
            expected.append(
                "\(t.name) \(numpyName[t.dtype]!) \(t.shape) " + values.joined(separator: " "))
        }
        var lines = out.split(separator: "\n").map(String.init)
        let meta = lines.popLast() ?? ""
        XCTAssertEqual(lines, expected)
        XCTAssertEqual(
            try JSONSerialization.jsonObject(with: Data(meta.utf8)) as? [String: String],
            f.metadata)

        // And the other way: every dtype written by the reference implementation reads here.
        let theirs = dir + "/theirs.safetensors"
        let writer = """
            import sys, numpy as np
            from safetensors.numpy import save_file
            save_file({'b': np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5,
                       'a': np.array([-5, 7], dtype=np.int64),
                       'c': np.array([3], dtype=np.uint8),
                       'd': np.array(0.1, dtype=np.float64),
                       'e': np.array([[-1], [2]], dtype=np.int32),
                       'z': np.zeros((0, 4), dtype=np.float32)},
                      sys.argv[1], metadata={'k': 'v'})
            """
        XCTAssertNotNil(runPython(["-c", writer, theirs]))
        let g = try SafeTensorsFile.read(path: theirs)
        XCTAssertEqual(Set(g.names), ["a", "b", "c", "d", "e", "z"])
        XCTAssertEqual(g.metadata, ["k": "v"])
        XCTAssertEqual(g.dtype("b"), .f32)
        XCTAssertEqual(g.shape("b"), [2, 3])
        XCTAssertEqual(try g.floats("b"), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
        XCTAssertEqual(try g.int64s("a"), [-5, 7])
        XCTAssertEqual(try g.uint8s("c"), [3])
        XCTAssertEqual(g.shape("d"), [])
        XCTAssertEqual(try g.doubles("d"), [0.1])
        XCTAssertEqual(g.shape("e"), [2, 1])
        XCTAssertEqual(try g.int32s("e"), [-1, 2])
        XCTAssertEqual(g.shape("z"), [0, 4])
        XCTAssertEqual(try g.floats("z"), [])
    }

    // MARK: - Helpers

    /// Runs $CSGD_PYTHON or python3 (Python.swift); its stdout on success, else nil.
    private func runPython(_ args: [String]) -> String? { Python.run(args) }

}
