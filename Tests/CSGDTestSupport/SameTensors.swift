// The bitwise-resume assertion many tests make: two model or checkpoint files hold the same
// tensors, bit for bit.

import CSGDCore
import XCTest

/// Asserts that the safetensors files `a` and `b` hold the same tensor names and, for each,
/// equal float values; `label` prefixes the failure messages.
public func assertSameTensors(
    _ a: String, _ b: String, _ label: String = "", file: StaticString = #filePath,
    line: UInt = #line
) throws {
    let fa = try SafeTensorsFile.read(path: a)
    let fb = try SafeTensorsFile.read(path: b)
    XCTAssertEqual(fa.names, fb.names, label, file: file, line: line)
    for n in fa.names where fb.names.contains(n) {
        XCTAssertEqual(
            try fa.floats(n), try fb.floats(n), "\(label) tensor \(n) differs", file: file,
            line: line)
    }
}
