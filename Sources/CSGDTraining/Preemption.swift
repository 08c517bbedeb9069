// Preemption: SIGUSR1 or SIGTERM on any rank sets a flag (an async-signal-safe handler in
// CSGDSignals). At the next step boundary every rank contributes its flag to one allreduce
// (max of 0/1, one double per step; skipped with 1 rank), so all ranks stop at the same step;
// rank 0 writes a checkpoint and the job exits with `Preemption.exitCode` (3). `--resume auto`
// continues from that checkpoint, bitwise as if never stopped.

import CSGDCore
import CSGDDistributed
import CSGDModels
import CSGDRunFiles
import CSGDSignals
import Foundation

/// The preemption signal flag and the job's exit status after a preemption checkpoint.
public enum Preemption {
    /// Exit status of a preempted job: "preempted, checkpoint written, resume to continue".
    public static let exitCode: Int32 = 3

    /// Installs the SIGUSR1/SIGTERM handler (train and csgd jobs, after MPI is started).
    /// - Throws: `CSGDError` when sigaction fails.
    public static func installHandler() throws {
        if csgd_install_preemption_handler() != 0 {
            throw CSGDError("cannot install the SIGUSR1/SIGTERM handler: \(errnoText())")
        }
    }

    /// The signal this process received (0: none).
    public static var signalReceived: Int32 { csgd_preemption_signal() }

    /// Whether any rank received a preemption signal: the local flag with 1 rank, else the
    /// max over ranks (a collective: every rank must call it at the same step).
    static func requested(_ comm: Communicator) -> Bool {
        let local: Double = signalReceived != 0 ? 1 : 0
        if comm.size == 1 { return local != 0 }
        return comm.allreduceMax(local) != 0
    }
}

/// Thrown on every rank once the preemption checkpoint is written; `runJob` turns it into
/// exit status `Preemption.exitCode`.
public struct Preempted: Error, Sendable {
    /// The checkpoint written ("" when none was needed).
    public let checkpoint: String
    /// The global step it holds.
    public let step: Int

    /// Thrown by `Sensitivity.measure` when the ranks agreed to stop between cells; the
    /// trainer then checkpoints the round's start (`budgetTarget`).
    static var duringSensitivity: Preempted {
        Preempted(checkpoint: "", step: -1)
    }
}

extension Trainer {
    /// The step-boundary preemption check: when any rank was signalled, writes a checkpoint
    /// (rank 0) and throws `Preempted` on every rank.
    /// With `alreadyAgreed`, the ranks have just agreed on the stop (no second collective).
    func stopIfPreempted(_ net: Network, _ state: TrainState, alreadyAgreed: Bool = false)
        throws
    {
        guard alreadyAgreed || Preemption.requested(comm) else { return }
        try checkpoint(net, state)
        log.info(
            "preempted (signal received): checkpoint written at step \(globalStep(state)); "
                + "exiting with status \(Preemption.exitCode), rerun with --resume auto to continue"
        )
        throw Preempted(checkpoint: checkpointPath, step: globalStep(state))
    }
}

/// `strerror(errno)`.
private func errnoText() -> String { String(cString: strerror(errno)) }
