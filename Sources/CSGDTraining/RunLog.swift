// What the user sees: rank-0 progress (a live line on a terminal, plain periodic lines in a
// log file or CI), epoch summaries, and one JSON line per epoch appended to metrics.jsonl.

import CSGDDistributed
import Foundation

/// Rank-0 console and metrics output of a run.
public final class RunLog {
    let comm: Communicator
    let metricsPath: String?
    let isTerminal: Bool
    private var liveLineOpen = false

    /// - Parameter metricsPath: where epoch records are appended (rank 0 only); nil = none.
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
    func progress(_ line: String, step: Int, every: Int) {
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

    /// Appends one JSON object (keys sorted) to the metrics file on rank 0.
    public func record(_ fields: [String: Any]) {
        guard comm.isRoot, let metricsPath else { return }
        guard
            let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]),
            let text = String(data: data, encoding: .utf8)
        else { return }
        let url = URL(fileURLWithPath: metricsPath)
        try? FileManager.default.createDirectory(
            at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        if let h = FileHandle(forWritingAtPath: metricsPath) {
            h.seekToEndOfFile()
            h.write(Data((text + "\n").utf8))
            h.closeFile()
        } else {
            _ = FileManager.default.createFile(
                atPath: metricsPath, contents: Data((text + "\n").utf8))
        }
    }
}

/// Formats seconds as `1h02m`, `3m05s` or `42s`.
func formatDuration(_ s: Double) -> String {
    if !s.isFinite || s < 0 { return "?" }
    let t = Int(s.rounded())
    if t >= 3600 { return "\(t / 3600)h" + String(format: "%02dm", (t % 3600) / 60) }
    if t >= 60 { return "\(t / 60)m" + String(format: "%02ds", t % 60) }
    return "\(t)s"
}
