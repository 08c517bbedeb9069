// TensorBoard event files: `events.out.tfevents.<unix seconds>.<host>` in a log folder, a
// sequence of TFRecord-framed `Event` messages (event.proto) whose first record holds the file
// version "brain.Event:2" and whose others each hold the scalars of one step.
//
// A writer creates its file on the first write (so a job that records nothing leaves no file),
// never reopens or appends to an existing one (a resumed job starts a new file; TensorBoard
// merges the files of a folder), and writes each record with one write(2) and no user-space
// buffer, so a killed job loses nothing already written. Like the run's .jsonl records, it does
// not fsync: a record survives the process, not the machine.

import CSGDCore
import Foundation
import SwiftProtobuf

/// One scalar as read back from an events file.
public struct ScalarEvent: Equatable, Sendable {
    /// The global step.
    public var step: Int64
    /// The chart's name, e.g. `train/loss`.
    public var tag: String
    /// The value (TensorBoard stores float32).
    public var value: Float
    /// Seconds since the Unix epoch when it was written.
    public var wallTime: Double

    /// A scalar at `step`.
    public init(step: Int64, tag: String, value: Float, wallTime: Double) {
        self.step = step
        self.tag = tag
        self.value = value
        self.wallTime = wallTime
    }
}

/// Appends scalar events to a new events file in a folder.
public final class EventFileWriter {
    /// The version string of the first record of every file.
    public static let fileVersion = "brain.Event:2"
    /// The common start of every events file name (TensorBoard looks for "tfevents").
    public static let namePrefix = "events.out.tfevents."

    /// The log folder, created on the first write.
    public let directory: String
    /// The file written to; nil until the first write.
    public private(set) var path: String?
    private var fd: Int32 = -1

    /// A writer into `directory`; nothing is created until the first `write`.
    public init(directory: String) {
        self.directory = directory
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Appends one event holding `scalars` at `step` (each value stored as float32, NaN and
    /// ±infinity included). The first call creates the folder and the file.
    /// - Parameter wallTime: seconds since the Unix epoch (now by default).
    /// - Throws: `CSGDError` naming the folder or file when it cannot be created or written.
    public func write(
        step: Int, scalars: [(tag: String, value: Double)],
        wallTime: Double = Date().timeIntervalSince1970
    ) throws {
        var event = TFEvent()
        event.wallTime = wallTime
        event.step = Int64(step)
        var summary = TFSummary()
        summary.value = scalars.map {
            var v = TFSummary.Value()
            v.tag = $0.tag
            v.simpleValue = Float($0.value)
            return v
        }
        event.summary = summary
        if fd < 0 { try create(wallTime: wallTime) }
        try append(event)
    }

    /// Creates the folder and a file no other writer has, then writes the version record.
    private func create(wallTime: Double) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CSGDError("cannot create the TensorBoard folder \(directory)")
        }
        let base = directory + "/" + Self.namePrefix + "\(Int64(wallTime)).\(Self.hostName())"
        // Two jobs in one second on one host (a quick resume): the later one takes a suffix.
        var name = base
        var n = 1
        while true {
            let f = open(name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            if f >= 0 {
                fd = f
                break
            }
            if errno != EEXIST || n >= 1000 {
                throw CSGDError("cannot create \(name): \(String(cString: strerror(errno)))")
            }
            n += 1
            name = base + ".\(n)"
        }
        path = name
        var version = TFEvent()
        version.wallTime = wallTime
        version.fileVersion = Self.fileVersion
        try append(version)
    }

    /// Frames `event` and writes it with one write(2) (retried for the rest if partial).
    private func append(_ event: TFEvent) throws {
        let path = path ?? directory
        let data: [UInt8]
        do {
            data = try event.serializedBytes()
        } catch {
            throw CSGDError("cannot encode a TensorBoard event for \(path): \(error)")
        }
        var bytes = TFRecord.frame(data)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                throw CSGDError("cannot write \(path): \(String(cString: strerror(errno)))")
            }
            bytes = bytes.dropFirst(n)
        }
    }

    static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        if gethostname(&name, name.count - 1) != 0 { return "localhost" }
        let host = String(
            decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return host.isEmpty ? "localhost" : host.replacingOccurrences(of: "/", with: "_")
    }
}

/// Reads events files back (checks, tests).
public enum EventFileReader {
    /// What one events file holds.
    public struct Contents: Sendable {
        /// The first record's version string (nil if the first record has none).
        public var fileVersion: String?
        /// Every scalar of every summary, in file order.
        public var scalars: [ScalarEvent]
    }

    /// The events files of `directory`, in name order (TensorBoard's reading order).
    public static func files(in directory: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix(EventFileWriter.namePrefix) }.sorted()
            .map { directory + "/" + $0 }
    }

    /// Reads `path`, checking every record's CRCs.
    /// - Throws: `CSGDError` naming the file and the record on a CRC mismatch, a cut record,
    ///   or an undecodable event.
    public static func read(_ path: String) throws -> Contents {
        let bytes = try readWholeFile(path, limit: 1 << 30)
        var contents = Contents(fileVersion: nil, scalars: [])
        for (i, record) in try TFRecord.records(in: bytes, name: path).enumerated() {
            let event: TFEvent
            do {
                event = try TFEvent(serializedBytes: record)
            } catch {
                throw CSGDError("\(path): record \(i) is not an Event: \(error)")
            }
            switch event.what {
            case .fileVersion(let v):
                if i == 0 { contents.fileVersion = v }
            case .summary(let s):
                for v in s.value {
                    if case .simpleValue(let x) = v.value {
                        contents.scalars.append(
                            ScalarEvent(
                                step: event.step, tag: v.tag, value: x, wallTime: event.wallTime))
                    }
                }
            case nil:
                break
            }
        }
        return contents
    }
}
