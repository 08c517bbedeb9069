// Weights stored outside the .onnx file (ONNX "external data"): torch 2.13's default exporter
// writes every initializer to `model.onnx.data` beside the model, each tensor naming the file
// (`location`), its byte `offset` and `length`.
//
// The names come from an untrusted file, so a location is read only when it is a plain
// relative path inside the model's own folder: no absolute path, no `..`, no empty or `.`
// component, nothing that resolves (through symlinks) outside the folder, a regular file, and
// every offset + length within it. Each data file is read once and shared by its tensors.

import CSGDCore
import CSGDONNX
import Foundation

/// Reads external tensor data for one model file.
struct ExternalData {
    /// The model file's folder (resolved), or nil when the model was not read from a file.
    let folder: String?
    /// The model, for messages.
    let source: String
    /// Data files read so far, by location.
    private var files: [String: [UInt8]] = [:]

    /// External data of the model at `modelPath` (nil: the model has no file, so none).
    init(modelPath: String?, source: String) {
        self.source = source
        folder = modelPath.map {
            URL(fileURLWithPath: $0).deletingLastPathComponent().resolvingSymlinksInPath().path
        }
    }

    /// The bytes of tensor `t` (`what` names it in messages).
    mutating func bytes(of t: ONNXTensorProto, what: String) throws -> ArraySlice<UInt8> {
        func fail(_ why: String) -> CSGDError { CSGDError("\(source): \(what): \(why)") }
        var location: String?
        var offset = 0
        var length: Int?
        for e in t.externalData {
            switch e.key {
            case "location": location = e.value
            case "offset":
                guard let v = Int(e.value), v >= 0 else { throw fail("offset '\(e.value)'") }
                offset = v
            case "length":
                guard let v = Int(e.value), v >= 0 else { throw fail("length '\(e.value)'") }
                length = v
            case "checksum": break
            default: throw fail("unknown external-data key '\(e.key.prefix(64))'")
            }
        }
        guard let location, !location.isEmpty else {
            throw fail("stored externally without a location")
        }
        guard let folder else {
            throw fail(
                "stored in external file '\(location.prefix(200))', but the model has no folder")
        }
        if files[location] == nil {
            files[location] = try read(location, folder: folder, fail: fail)
        }
        let data = files[location]!
        let count = length ?? (data.count - min(offset, data.count))
        let (end, overflow) = offset.addingReportingOverflow(count)
        if overflow || end > data.count {
            throw fail(
                "bytes \(offset)..<\(offset &+ count) are outside '\(location)' (\(data.count) bytes)"
            )
        }
        return data[offset..<end]
    }

    /// Reads data file `location` after checking it stays inside `folder`.
    private func read(_ location: String, folder: String, fail: (String) -> CSGDError) throws
        -> [UInt8]
    {
        let shown = "'\(location.prefix(200))'"
        let parts = location.split(separator: "/", omittingEmptySubsequences: false)
        if location.hasPrefix("/") || location.contains("\\") || location.contains("\0")
            || parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." })
        {
            throw fail(
                "external data location \(shown) is not a plain relative path inside the model's "
                    + "folder")
        }
        let path = URL(fileURLWithPath: folder).appendingPathComponent(location).path
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        if !resolved.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/") {
            throw fail("external data location \(shown) resolves outside the model's folder")
        }
        if !FileManager.default.fileExists(atPath: resolved) {
            throw fail("external data file \(shown) is missing beside the model")
        }
        return try readWholeFile(resolved, limit: ONNXImport.maxFileBytes)
    }
}
