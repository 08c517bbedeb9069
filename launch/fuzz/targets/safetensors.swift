// Fuzz target: the safetensors reader (CSGDCore's `SafeTensorsFile(serialized:source:)`).
// Any thrown error is an accepted outcome; a trap, a sanitizer report, a hang or a blown
// memory limit is a finding. A file that parses is read back tensor by tensor and must survive
// a serialize/parse round trip unchanged.

import CSGDCore
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    guard let file = try? SafeTensorsFile(serialized: bytes, source: "fuzz") else { return 0 }
    for name in file.names {
        guard let dtype = file.dtype(name) else { fatalError("listed tensor \(name) not found") }
        switch dtype {
        case .f32: _ = try? file.floats(name)
        case .f64: _ = try? file.doubles(name)
        case .i64: _ = try? file.int64s(name)
        case .i32: _ = try? file.int32s(name)
        case .u8: _ = try? file.uint8s(name)
        }
    }
    let again: SafeTensorsFile
    do {
        again = try SafeTensorsFile(serialized: file.serialized(), source: "fuzz round trip")
    } catch {
        fatalError("a file that parsed does not parse after serialized(): \(error)")
    }
    if again != file { fatalError("serialize/parse round trip changed the file") }
    return 0
}

/// With CSGD_FUZZ_SEEDS=<dir>, writes seed files made with the project's own writer and exits.
@_cdecl("LLVMFuzzerInitialize")
public func initSafeTensors(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
    guard let dir = ProcessInfo.processInfo.environment["CSGD_FUZZ_SEEDS"] else { return 0 }
    var a = SafeTensorsFile(metadata: ["format": "pt", "note": "seed"])
    a.add("conv1.weight", shape: [2, 1, 3, 3], floats: (0..<18).map { Float($0) * 0.5 })
    a.add("bn.running_var", shape: [2], doubles: [1, 2])
    a.add("bn.num_batches_tracked", shape: [], int64s: [7])
    a.add("idx", shape: [3], int32s: [1, -2, 3])
    a.add("mask", shape: [4], uint8s: [0, 1, 0, 1])
    var b = SafeTensorsFile()
    b.add("fc.weight", shape: [10, 4], floats: [Float](repeating: 0.25, count: 40))
    b.add("fc.bias", shape: [10], floats: [Float](repeating: 0, count: 10))
    let c = SafeTensorsFile(metadata: ["only": "metadata"])
    for (name, file) in [("mixed", a), ("fc", b), ("empty", c)] {
        try! file.serialized().write(to: URL(fileURLWithPath: "\(dir)/\(name).safetensors"))
    }
    exit(0)
}
