// Fuzz target: the ONNX importer. The bytes are parsed as an ONNX ModelProto (CSGDONNX's
// generated SwiftProtobuf message) and translated with `ONNXImport.translate`, what
// `csgd-dist import` does after reading the file (no model path: external data is refused).
// Any thrown error is an accepted outcome; a trap, a sanitizer report, a hang or a blown
// memory limit is a finding.

import CSGDImport
import CSGDONNX
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzONNX(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    guard let model = try? ONNXModelProto(serializedBytes: bytes) else { return 0 }
    _ = try? ONNXImport.translate(model, source: "fuzz.onnx", options: ImportOptions(name: "fuzz"))
    return 0
}
