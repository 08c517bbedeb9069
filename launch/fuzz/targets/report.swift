// Fuzz target: the run-folder reader of `csgd-dist report` (CSGDReport's
// `RunRecords(directory:)`, then `HTMLReport.render`). The input is split at its first NUL
// byte: what comes before is written as the folder's metrics.jsonl, what comes after (if any)
// as its allocation.json. Any thrown error is an accepted outcome; a trap, a sanitizer report,
// a hang or a blown memory limit is a finding.

import CSGDReport
import Foundation

/// This process's run folder, in memory when /dev/shm exists.
let runDir: String = {
    let base =
        FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let dir = "\(base)/csgd-fuzz-report-\(getpid())"
    try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    atexit { try? FileManager.default.removeItem(atPath: runDir) }
    return dir
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzReport(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let cut = bytes.firstIndex(of: 0) ?? size
    let allocationPath = runDir + "/allocation.json"
    try! Data(bytes[0..<cut]).write(to: URL(fileURLWithPath: runDir + "/metrics.jsonl"))
    if cut < size {
        try! Data(bytes[(cut + 1)...]).write(to: URL(fileURLWithPath: allocationPath))
    } else {
        unlink(allocationPath)
    }
    guard let records = try? RunRecords(directory: runDir) else { return 0 }
    _ = HTMLReport.render(records)
    return 0
}
