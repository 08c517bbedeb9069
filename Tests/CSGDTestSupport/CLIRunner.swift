// Runs the built `csgd-dist` executable from the CLI and hostile-input tests, directly or under
// mpirun: they exercise the real binary exactly as a user or a launch script would, including
// argument parsing, exit codes and multi-rank MPI runs. Keep the API small and stable.

import CSGDCore
import Foundation
import XCTest

/// What one run of the executable produced.
public struct CLIResult {
    /// The process's exit status (or 128+signal if it was killed by a signal).
    public let exitCode: Int32
    /// Everything written to stdout and stderr, interleaved as it arrived.
    public let output: String
    /// Whether the run hit its timeout and was killed.
    public let timedOut: Bool
    /// Wall-clock run time in seconds.
    public let seconds: Double

    /// `output` split into lines, without empty lines.
    public var lines: [String] { output.split(separator: "\n").map(String.init) }

    /// Lines starting with `prefix`.
    public func lines(startingWith prefix: String) -> [String] {
        lines.filter { $0.hasPrefix(prefix) }
    }
}

/// Finds and runs `csgd-dist` (or another product of the same build).
public enum CLIRunner {
    /// Where Open MPI's launcher is expected.
    public static let mpirunPath = "/usr/bin/mpirun"

    /// Whether `mpirunPath` exists and is executable.
    public static var mpirunAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: mpirunPath)
    }

    /// Throws `XCTSkip` when mpirun is not installed; call it first in multi-rank tests.
    public static func requireMPIRun() throws {
        if !mpirunAvailable { throw XCTSkip("\(mpirunPath) not found") }
    }

    /// The built executable `name`: resolves `/proc/self/exe` (the test bundle, which lives in
    /// `.build*/<triple>/<config>/`) and walks up to the first directory containing `name`.
    public static func executablePath(_ name: String = "csgd-dist") throws -> String {
        let fm = FileManager.default
        let exe = try fm.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent(name).path
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: candidate, isDirectory: &isDir), !isDir.boolValue,
                fm.isExecutableFile(atPath: candidate)
            {
                return candidate
            }
            dir.deleteLastPathComponent()
        }
        throw CLIRunnerError("no executable '\(name)' in any parent directory of \(exe)")
    }

    /// Runs the built `csgd-dist` with `args`.
    /// - Parameters:
    ///   - env: variables added to (or overriding) the test process's environment. Open MPI
    ///     variables are not inherited (see `isInheritedMPIVariable`).
    ///   - timeout: seconds before the process is killed (the result then has `timedOut`).
    public static func run(
        _ args: [String], env: [String: String] = [:], timeout: Double = 120
    ) throws -> CLIResult {
        try runProcess(executablePath(), args, env: env, timeout: timeout)
    }

    /// Runs `csgd-dist` with `args` on one BLAS thread and fails the calling test (at the
    /// caller's line) unless it exits 0; returns the result for further checks.
    @discardableResult
    public static func succeed(
        _ args: [String], timeout: Double = 300, file: StaticString = #filePath,
        line: UInt = #line
    ) throws -> CLIResult {
        let r = try run(args, env: ["OPENBLAS_NUM_THREADS": "1"], timeout: timeout)
        XCTAssertEqual(r.exitCode, 0, r.output, file: file, line: line)
        return r
    }

    /// Runs the built `csgd-dist` with `args` as `ranks` MPI ranks:
    /// `mpirun --allow-run-as-root --oversubscribe -n <ranks> --mca btl <btl> csgd-dist <args>`,
    /// with `OPENBLAS_NUM_THREADS=1`.
    /// - Parameters:
    ///   - btl: Open MPI byte-transfer layers, e.g. `self,vader` (shared memory) or `self,tcp`.
    ///   - mpirunOptions: extra mpirun options placed before the executable.
    ///   - env: extra environment variables (they reach local ranks without `-x`).
    ///   - timeout: seconds before mpirun is killed.
    public static func mpirun(
        ranks: Int, args: [String], btl: String = "self,vader", mpirunOptions: [String] = [],
        env: [String: String] = [:], timeout: Double = 120
    ) throws -> CLIResult {
        let launcher =
            ["--allow-run-as-root", "--oversubscribe", "-n", "\(ranks)", "--mca", "btl", btl]
            + mpirunOptions + [try executablePath()]
        var environment = ["OPENBLAS_NUM_THREADS": "1"]
        environment.merge(env) { _, new in new }
        return try runProcess(mpirunPath, launcher + args, env: environment, timeout: timeout)
    }

    /// `mpirun(ranks:args:)` that calls `watch(mpirunPID, outputSoFar)` on every chunk of
    /// output while the job runs (e.g. to signal a rank once a progress line appears).
    public static func mpirun(
        ranks: Int, args: [String], timeout: Double = 120,
        watch: @escaping @Sendable (_ mpirunPID: Int32, _ output: String) -> Void
    ) throws -> CLIResult {
        let launcher =
            [
                "--allow-run-as-root", "--oversubscribe", "-n", "\(ranks)", "--mca", "btl",
                "self,vader",
            ]
            + [try executablePath()]
        return try runProcess(
            mpirunPath, launcher + args, env: ["OPENBLAS_NUM_THREADS": "1"], timeout: timeout,
            watch: watch)
    }

    /// The child processes of `pid` (the ranks of a local mpirun), from /proc.
    public static func childPIDs(of pid: Int32) -> [Int32] {
        let procs = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return procs.compactMap { Int32($0) }.filter { p in
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && Int32(fields[1]) == pid
        }.sorted()
    }

    /// Whether `key` is dropped from the inherited environment: every `OMPI_*`, `ORTE_*`,
    /// `OPAL_*` and `PMIX_*` variable except `OMPI_ALLOW_RUN_AS_ROOT*`. An in-process MPI
    /// singleton (e.g. a CSGDDistributedTests test in the same `swift test` run) exports
    /// `OMPI_MCA_ess=singleton`, `PMIX_SERVER_URI*` and more, which make a child `mpirun` or
    /// `csgd-dist` fail at once; tests also should not depend on the user's MPI tuning.
    public static func isInheritedMPIVariable(_ key: String) -> Bool {
        if key.hasPrefix("OMPI_ALLOW_RUN_AS_ROOT") { return false }
        return ["OMPI_", "ORTE_", "OPAL_", "PMIX_"].contains { key.hasPrefix($0) }
    }

    /// Runs any executable with stdin from /dev/null and stdout+stderr captured together.
    public static func runProcess(
        _ path: String, _ args: [String], env: [String: String], timeout: Double,
        watch: (@Sendable (_ pid: Int32, _ output: String) -> Void)? = nil
    ) throws -> CLIResult {
        var environment = ProcessInfo.processInfo.environment.filter { key, _ in
            !isInheritedMPIVariable(key)
        }
        environment.merge(env) { _, new in new }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe

        // Drain the pipe on another thread so a chatty child never blocks on a full pipe.
        let collected = OutputCollector()
        let reader = pipe.fileHandleForReading
        let drained = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            while true {
                let chunk = reader.availableData  // blocks; empty means end of file
                if chunk.isEmpty { break }
                collected.append(chunk)
                if let watch {
                    watch(
                        process.processIdentifier, String(decoding: collected.get(), as: UTF8.self))
                }
            }
            drained.signal()
        }
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }

        let start = Date()
        try process.run()  // also closes our copy of the pipe's write end
        var timedOut = false
        if exited.wait(timeout: .now() + timeout) == .timedOut {
            timedOut = true
            process.terminate()  // SIGTERM; mpirun forwards it to its ranks
            if exited.wait(timeout: .now() + 5) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
                _ = exited.wait(timeout: .now() + 5)
            }
        }
        // Orphaned grandchildren could hold the pipe open; do not wait for them forever.
        _ = drained.wait(timeout: .now() + 10)
        let seconds = Date().timeIntervalSince(start)
        let status: Int32
        if process.isRunning {
            status = -1
        } else if process.terminationReason == .uncaughtSignal {
            status = 128 + process.terminationStatus
        } else {
            status = process.terminationStatus
        }
        return CLIResult(
            exitCode: status, output: String(decoding: collected.get(), as: UTF8.self),
            timedOut: timedOut, seconds: seconds)
    }
}

/// A CLIRunner setup failure (e.g. the executable was not built).
public struct CLIRunnerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Output bytes handed from the reader thread to the test thread.
private final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func append(_ chunk: Data) {
        lock.lock()
        data.append(chunk)
        lock.unlock()
    }

    func get() -> Data {
        lock.lock()
        defer { lock.unlock() }
        return data
    }
}

/// The per-conv widths a model file records in its metadata.
public func modelWidths(_ path: String) throws -> [Int] {
    let f = try SafeTensorsFile.read(path: path)
    let arch =
        try JSONSerialization.jsonObject(with: Data(f.metadata["csgd.architecture"]!.utf8))
        as! [String: Any]
    return arch["widths"] as! [Int]
}
