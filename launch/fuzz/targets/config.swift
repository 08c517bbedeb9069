// Fuzz target: the run-config reader (CSGDConfig's `RunConfig.load(yamlText:source:)`, then
// `validate()`), what `csgd-dist train|csgd --config` does first. Any thrown error is an
// accepted outcome; a trap, a sanitizer report, a hang or a blown memory limit is a finding.

import CSGDConfig
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let config = try? RunConfig.load(yamlText: text, source: "fuzz.yaml") else { return 0 }
    try? config.validate()
    try? config.validate(worldSize: 4)
    return 0
}
