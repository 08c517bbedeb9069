// `csgd-dist check-comm`: proves the MPI wiring (launch, transport, collectives) end to end in
// seconds, before a long training run depends on it. Every rank prints its own result line.

import ArgumentParser
import CSGDCore
import CSGDDistributed
import Foundation

/// Runs `CommCheck` on every rank and exits non-zero if any collective gave a wrong result.
struct CheckCommCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-comm",
        abstract: "Check MPI allreduce, broadcast and allgather across all ranks.",
        discussion: """
            Each rank fills a buffer from a seeded stream, and every rank verifies the \
            collective results against values it computes on its own. Run it under mpirun, \
            e.g. `mpirun -n 2 csgd-dist check-comm`; without mpirun it is rank 0 of 1.
            """)

    // Unconditional, so `--count -5` reaches validate() instead of being taken for a flag.
    @Option(parsing: .unconditional, help: "Floats per rank in the allreduce and broadcast checks.")
    var count: Int = 1_000_003

    @Option(help: "Seed of the per-rank test data.")
    var seed: UInt64 = 42

    /// Test hook: elements per MPI call, to exercise chunking with small buffers.
    @Option(help: .hidden)
    var chunkElements: Int?

    /// Test hook: this rank makes an invalid MPI call, to check that the job aborts, not hangs.
    @Option(help: .hidden)
    var debugFailRank: Int?

    func validate() throws {
        // Two float buffers of `count` each; 2^28 floats (1 GiB each) is far past any check.
        if count < 1 || count > 1 << 28 {
            throw ValidationError("--count must be in 1...\(1 << 28) (got \(count))")
        }
        if let c = chunkElements, c < 1 {
            throw ValidationError("--chunk-elements must be at least 1 (got \(c))")
        }
    }

    func run() throws {
        let comm = try makeCommunicator()
        if let c = chunkElements, let mpi = comm as? MPICommunicator { mpi.maxChunkElements = c }
        let ranks = "\(comm.size) rank\(comm.size == 1 ? "" : "s")"
        print0(
            comm,
            "check-comm: \(ranks) (\(LaunchEnvironment().summary)), count \(count), seed \(seed)")
        if debugFailRank == comm.rank {
            var x: Float = 0
            comm.broadcast(&x, count: 1, root: comm.size)  // no such rank: MPI reports an error
        }
        if let mpi = comm as? MPICommunicator {
            let names = [0: "libnbc's own choice", 1: "ring", 2: "binomial", 3: "rabenseifner"]
            let line = mpi.iallreduceAlgorithm.map { "\($0) (\(names[$0] ?? "other"))" }
            print0(comm, "check-comm: iallreduce algorithm \(line ?? "not reported by this MPI")")
        }
        let report = CommCheck.run(comm: comm, count: count, seed: seed)
        print("[rank \(comm.rank)] \(report.line)")
        fflush(stdout)
        comm.barrier()
        if report.allRanksOK { print0(comm, "check-comm: \(ranks) ok") }
        (comm as? MPICommunicator)?.finalize()
        if report.allRanksOK { return }
        if comm.isRoot {
            let failed = report.failedRanks.map(String.init).joined(separator: ", ")
            throw CSGDError("check-comm failed on rank(s) \(failed); see their [rank r] lines")
        }
        throw ExitCode.failure
    }
}
