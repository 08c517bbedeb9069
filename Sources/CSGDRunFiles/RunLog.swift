// What the user sees: rank-0 progress (a live line on a terminal, plain periodic lines in a
// log file or CI), epoch summaries, one JSON line per epoch or prune (a `MetricsRecord`)
// appended to metrics.jsonl, and one per `log_every` steps (a `StepRecord`) to steps.jsonl.
// Every record also goes to TensorBoard event files under `<out_dir>/tb/` (RecordScalars.swift
// names the scalars), after its .jsonl line: a job's first record creates a new events file.

import CSGDCore
import CSGDDistributed
import CSGDTensorBoard
import Foundation

/// Rank-0 console and metrics output of a run.
public final class RunLog {
    let comm: Communicator
    let metricsPath: String?
    let stepsPath: String?
    /// Rank 0's TensorBoard writer; nil on other ranks and without a TensorBoard folder.
    let tensorBoard: EventFileWriter?
    let isTerminal: Bool
    private var liveLineOpen = false

    /// - Parameters:
    ///   - metricsPath: where epoch and prune records are appended (rank 0 only); nil = none.
    ///   - stepsPath: where step records are appended (rank 0 only); nil = none.
    ///   - tensorBoardDir: the folder of the TensorBoard events file that every record also
    ///     goes to (rank 0 only; created with the file at the first record); nil = none.
    public init(
        comm: Communicator, metricsPath: String?, stepsPath: String? = nil,
        tensorBoardDir: String? = nil
    ) {
        self.comm = comm
        self.metricsPath = metricsPath
        self.stepsPath = stepsPath
        tensorBoard = comm.isRoot ? tensorBoardDir.map { EventFileWriter(directory: $0) } : nil
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
    /// metrics file, write nothing), and its scalars to TensorBoard at `step`. See
    /// `MetricsRecord` for the format.
    /// - Parameter step: the global step the record closes (TensorBoard's x axis).
    /// - Throws: `CSGDError` naming the metrics or events file if the record cannot be encoded
    ///   or written; a record is never dropped silently.
    public func record(_ r: MetricsRecord, step: Int) throws {
        guard comm.isRoot else { return }
        if let metricsPath { try append({ try r.jsonLine() }, to: metricsPath) }
        try tensorBoard?.write(step: step, scalars: r.scalars)
    }

    /// Appends `r` as one line of steps.jsonl on rank 0 (nothing without a steps file), and
    /// its scalars to TensorBoard at `r.step`.
    /// - Throws: `CSGDError` naming the file if the record cannot be encoded or written.
    public func record(step r: StepRecord) throws {
        guard comm.isRoot else { return }
        if let stepsPath { try append({ try r.jsonLine() }, to: stepsPath) }
        try tensorBoard?.write(step: r.step, scalars: r.scalars)
    }

    /// Appends one encoded line to `path`, creating the folder as needed.
    private func append(_ encode: () throws -> String, to path: String) throws {
        let line: String
        do {
            line = try encode()
        } catch let e as CSGDError {
            throw CSGDError("\(path): \(e.message)")
        }
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(
                atPath: dir, withIntermediateDirectories: true)
        } catch {
            throw CSGDError("cannot write \(path): cannot create the folder \(dir)")
        }
        try appendLine(line, to: path)
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
