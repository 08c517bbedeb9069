// The `csgd-dist` command: parses arguments, wires the library targets together, dispatches.
// No training logic lives here. Without a subcommand it runs `csgd`, so the design's launch
// line `mpirun -n 8 csgd-dist --config X.yaml` trains. Under mpirun every rank parses the
// same arguments, so help and usage errors are printed by rank 0 only (the rank is read from
// the launcher's environment: MPI is not started before parsing).

import ArgumentParser
import CSGDCore
import CSGDDistributed
import Foundation

@main
struct CSGDDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csgd-dist",
        abstract: "Centripetal SGD training and pruning of CNNs, data-parallel over MPI.",
        discussion: """
            Without a subcommand, csgd-dist runs the csgd job with the flags given, so \
            `mpirun -n 8 csgd-dist --config cluster-configs/X.yaml` trains and prunes; \
            `csgd-dist` alone runs the quick-start csgd job (the default config, out_dir \
            runs/quickstart). Under mpirun, help and usage errors are printed by rank 0 only; a \
            usage error exits non-zero on every rank. A train or csgd job that receives \
            SIGUSR1 or SIGTERM (on any rank) writes a checkpoint at the next step and exits \
            with status 3 ("preempted, checkpoint written, resume to continue"); `--resume \
            auto` continues it.
            """,
        subcommands: allSubcommands,
        defaultSubcommand: CSGDCommand.self
    )

    /// Parses and runs like ArgumentParser's own `main()`, except that ranks other than 0 of
    /// an mpirun launch stay silent about help and usage errors (same exit code).
    static func main() {
        do {
            var command = try parseAsRoot(
                rewritingResumeAuto(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            if !isLaunchRoot {
                let code = exitCode(for: error)
                // Let rank 0 print before mpirun sees a failed rank and stops the job.
                if code != .success { Thread.sleep(forTimeInterval: 2) }
                Foundation.exit(code.rawValue)
            }
            exit(withError: error)
        }
    }
}

/// Whether this process prints help and usage errors: rank 0 of an mpirun launch (rank from
/// `OMPI_COMM_WORLD_RANK`, or `PMIX_RANK` under `srun --mpi=pmix`), or any process not
/// started by a launcher.
var isLaunchRoot: Bool {
    let env = ProcessInfo.processInfo.environment
    let rank = LaunchEnvironment(environment: env).worldRank ?? env["PMIX_RANK"].flatMap { Int($0) }
    return (rank ?? 0) == 0
}

/// The hidden flag that `--resume auto` becomes before parsing.
let resumeAutoFlag = "resume-auto"

/// `--resume auto` (or `--resume=auto`) → `--resume-auto`: ArgumentParser flags take no value,
/// and a plain `--resume` keeps its meaning (resume, the checkpoint must exist). Every other
/// argument is passed through unchanged.
func rewritingResumeAuto(_ arguments: [String]) -> [String] {
    var out: [String] = []
    var i = 0
    while i < arguments.count {
        let a = arguments[i]
        if a == "--resume=auto" {
            out.append("--" + resumeAutoFlag)
        } else if a == "--resume", i + 1 < arguments.count, arguments[i + 1] == "auto" {
            out.append("--" + resumeAutoFlag)
            i += 1
        } else {
            out.append(a)
        }
        i += 1
    }
    return out
}
