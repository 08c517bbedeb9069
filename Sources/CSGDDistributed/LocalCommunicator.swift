// A communicator for one process without MPI: rank 0 of 1, every collective is the identity.
//
// Lets library code and unit tests run the data-parallel code path with no MPI runtime at all.
// It validates arguments like the MPI version would, so misuse is caught here too.

import Foundation

/// Rank 0 of a 1-rank job; collectives leave the data unchanged.
public final class LocalCommunicator: Communicator {
    /// Always 0.
    public let rank = 0
    /// Always 1.
    public let size = 1
    /// This machine's host name.
    public let processorName: String
    /// Stored only: with one rank no collective ever waits.
    public var collectiveTimeout = defaultCollectiveTimeout
    /// Stored only (see `Communicator.currentStep`).
    public var currentStep: Int?
    private var nextSerial = 0

    /// A single-process communicator.
    public init() {
        processorName = localHostName()
    }

    /// No-op (the sum over one rank); aborts on a negative count.
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        checkCount(count, "allreduceSum")
    }

    /// No-op (the sum over one rank), complete at once; aborts on a negative count.
    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
        -> CommRequest
    {
        checkCount(count, "startAllreduceSum")
        nextSerial += 1
        return CommRequest(serial: nextSerial - 1)
    }

    /// True for every request this communicator started; aborts on any other handle.
    public func test(_ request: CommRequest) -> Bool {
        if request.serial < 0 || request.serial >= nextSerial {
            abort(code: 1, message: "test: unknown request \(request.serial)")
        }
        return true
    }

    /// True: nothing is ever outstanding.
    @discardableResult
    public func testAll() -> Bool { true }

    /// No-op: nothing is ever outstanding.
    public func waitAll() {}

    /// No-op (the sum over one rank).
    public func allreduceSum(_ values: inout [Double]) {}

    /// Returns `value` (the maximum over one rank).
    public func allreduceMax(_ value: Double) -> Double { value }

    /// No-op; aborts unless `root` is 0.
    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        checkCount(count, "broadcast")
        checkRoot(root)
    }

    /// No-op; aborts unless `root` is 0.
    public func broadcast(bytes: inout [UInt8], root: Int) {
        checkRoot(root)
    }

    /// `[value]`.
    public func allgather(_ value: UInt64) -> [UInt64] { [value] }

    /// No-op.
    public func barrier() {}

    /// Prints `rank 0: message` to stderr and exits the process with `code`.
    public func abort(code: Int32, message: String) -> Never {
        writeStderr("rank 0: \(message)")
        exit(code)
    }

    private func checkCount(_ count: Int, _ what: String) {
        if count < 0 { abort(code: 1, message: "\(what): negative count \(count)") }
    }

    private func checkRoot(_ root: Int) {
        if root != 0 { abort(code: 1, message: "broadcast: root \(root) is not a rank of 1") }
    }
}
