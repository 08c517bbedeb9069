// What the user sees: rank-0 progress (a live line on a terminal, plain periodic lines in a
// log file or CI), epoch summaries, and one JSON line per epoch or prune (a `MetricsRecord`)
// appended to metrics.jsonl.

import CSGDCore
import CSGDDistributed
import Foundation

/// Rank-0 console and metrics output of a run.
public final class RunLog {
    let comm: Communicator
    let metricsPath: String?
    let isTerminal: Bool
    private var liveLineOpen = false

    /// - Parameter metricsPath: where epoch and prune records are appended (rank 0 only); nil = none.
    public init(comm: Communicator, metricsPath: String?) {
        self.comm = comm
        self.metricsPath = metricsPath
        // Open MPI hands ranks a pty even when mpirun's own output is a file: no live line then.
        isTerminal =
            isatty(1) != 0 && ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] == nil
    }

    /// Prints a line on rank 0.
    public func info(_ line: String) {
        guard comm.isRoot else { return }
        if liveLineOpen {
            print("")
            liveLineOpen = false
        }
        print(line)
        fflush(stdout)
    }

    /// A progress update: redrawn in place on a terminal, printed every `every` steps
    /// otherwise.
    public func progress(_ line: String, step: Int, every: Int) {
        guard comm.isRoot else { return }
        if isTerminal {
            print("\r\u{1B}[K" + line, terminator: "")
            liveLineOpen = true
            fflush(stdout)
        } else if step % every == 0 {
            print(line)
            fflush(stdout)
        }
    }

    /// Appends `r` as one line of the metrics file on rank 0 (other ranks, and runs without a
    /// metrics file, write nothing). See `MetricsRecord` for the format.
    /// - Throws: `CSGDError` naming the metrics file if the record cannot be encoded or written;
    ///   a record is never dropped silently.
    public func record(_ r: MetricsRecord) throws {
        guard comm.isRoot, let metricsPath else { return }
        let line: String
        do {
            line = try r.jsonLine() + "\n"
        } catch let e as CSGDError {
            throw CSGDError("\(metricsPath): \(e.message)")
        }
        let dir = URL(fileURLWithPath: metricsPath).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(
                atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw CSGDError("cannot write \(metricsPath): cannot create the folder \(dir)")
        }
        let fd = open(metricsPath, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        if fd < 0 {
            throw CSGDError("cannot write \(metricsPath): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var bytes = Array(line.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                throw CSGDError(
                    "cannot write \(metricsPath): \(String(cString: strerror(errno)))")
            }
            bytes = bytes.dropFirst(n)
        }
    }
}

/// Formats seconds as `1h02m`, `3m05s` or `42s`.
public func formatDuration(_ s: Double) -> String {
    if !s.isFinite || s < 0 { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return "\(t / 3600)h" + String(format: "%02dm", (t % 3600) / 60) }
    if t >= 60 { return "\(t / 60)m" + String(format: "%02ds", t % 60) }
    return "\(t)s"
}
