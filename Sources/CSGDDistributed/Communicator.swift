// The collective-communication interface the trainer is written against.
//
// Training code only ever sees `Communicator`: the same algorithm runs as rank 0 of 1 (plain
// binary, MPI singleton) or as one of N ranks under mpirun. Only this target imports CMPI, so
// everything MPI-specific stays behind this protocol.

import CSGDCore
import Foundation

/// Largest number of elements handed to one MPI call; longer buffers are sent in pieces so the
/// `Int32` element counts of the MPI C API never overflow.
public let maxCollectiveChunkElements = 64 << 20

/// Default `Communicator.collectiveTimeout` in seconds: long enough for any rank-0-only work
/// the other ranks wait through (checkpoint writes, a slow evaluation), short enough that a
/// stuck job ends within minutes.
public let defaultCollectiveTimeout = 300.0

/// Collective operations over a fixed group of ranks (data parallelism over MPI_COMM_WORLD).
///
/// Every collective must be called by every rank in the same order with matching counts and
/// roots. Calls are made from one thread (MPI is initialised with `MPI_THREAD_FUNNELED`).
/// Failures never return: the implementation reports them and ends the whole job, and so does a
/// collective that does not complete within `collectiveTimeout` (a stuck or dead rank).
public protocol Communicator: AnyObject {
    /// This process's index, `0..<size`.
    var rank: Int { get }
    /// Number of ranks in the job.
    var size: Int { get }
    /// Whether this is rank 0, the rank that logs and writes checkpoints.
    var isRoot: Bool { get }
    /// Host name as MPI reports it (`MPI_Get_processor_name`).
    var processorName: String { get }
    /// Seconds a collective (or `waitAll`) may wait for the other ranks; past it the rank
    /// prints one line naming the collective and `currentStep` and aborts the whole job.
    /// Must be > 0; `defaultCollectiveTimeout` unless set (from `collective_timeout_s`).
    var collectiveTimeout: Double { get set }
    /// The latest optimizer step started (as counted by `max_steps`), named in the timeout
    /// message; nil before the first step. The training loop sets it.
    var currentStep: Int? { get set }

    /// Replaces `buffer[0..<count]` on every rank by the element-wise sum over all ranks.
    /// Large counts are reduced in pieces of at most `maxCollectiveChunkElements`.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// Starts replacing `buffer[0..<count]` on every rank by the element-wise sum over all
    /// ranks, without waiting for it (pieces of at most `maxCollectiveChunkElements`). The
    /// buffer must stay allocated and untouched until `test` reports the request complete or
    /// `waitAll` returns. Ranks must start their non-blocking collectives in the same order.
    /// - Returns: a handle for `test`.
    func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) -> CommRequest
    /// Drives the outstanding non-blocking collectives forward (Open MPI has no progress
    /// thread, so they advance only inside MPI calls) and tells whether `request` is complete.
    func test(_ request: CommRequest) -> Bool
    /// Drives every outstanding non-blocking collective forward without blocking.
    /// - Returns: whether all of them are complete.
    @discardableResult
    func testAll() -> Bool
    /// Blocks until every outstanding non-blocking collective is complete.
    func waitAll()
    /// Replaces `values` on every rank by the element-wise sum over all ranks (metrics).
    /// Every rank must pass the same number of values.
    func allreduceSum(_ values: inout [Double])
    /// The maximum of `value` over all ranks.
    func allreduceMax(_ value: Double) -> Double
    /// Copies `buffer[0..<count]` of rank `root` into `buffer` on every other rank.
    /// Large counts are sent in pieces of at most `maxCollectiveChunkElements`.
    func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int)
    /// Replaces `bytes` on every rank by `root`'s bytes; the length need not match beforehand.
    func broadcast(bytes: inout [UInt8], root: Int)
    /// Every rank's `value`, indexed by rank (e.g. weight checksums, to detect replica drift).
    func allgather(_ value: UInt64) -> [UInt64]
    /// Blocks until every rank has reached the barrier.
    func barrier()
    /// Prints `rank R: message` to stderr and ends the whole job with `code`; never hangs.
    func abort(code: Int32, message: String) -> Never
    /// Splits the ranks into groups of `groupSize` consecutive ranks (`0..<g`, `g..<2g`, …) for
    /// collectives within a group (BatchNorm groups). Collective: every rank calls it, with the
    /// same `groupSize`. A group of 1 makes no communicator and its sums are the identity.
    /// - Throws: `CSGDError` unless `groupSize` ≥ 1 divides `size`.
    func makeRankGroup(groupSize: Int) throws -> RankGroup
}

/// A group of consecutive ranks of a `Communicator` (see `makeRankGroup(groupSize:)`), with a
/// sum over just those ranks. Same rules as the parent's collectives: every rank of the group
/// calls in the same order with the same counts, from the one MPI thread, and a sum that does
/// not complete within the parent's `collectiveTimeout` aborts the job.
public protocol RankGroup: AnyObject {
    /// Ranks in the group.
    var size: Int { get }
    /// Which group this rank belongs to: its rank ÷ `size`.
    var index: Int { get }
    /// Replaces `buffer[0..<count]` on every rank of the group by the element-wise sum over the
    /// group.
    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int)
}

/// A group of one rank: the sum is the identity, nothing is communicated.
public final class SingleRankGroup: RankGroup {
    /// Always 1.
    public let size = 1
    /// This rank's number, since every rank is its own group.
    public let index: Int
    /// The group of rank `rank` alone.
    public init(rank: Int) { index = rank }
    /// No-op (the sum over one rank).
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
}

/// The one-line error for a group size that does not split `ranks` ranks evenly, or nil.
public func rankGroupProblem(groupSize: Int, ranks: Int) -> String? {
    if groupSize >= 1 && ranks % groupSize == 0 { return nil }
    return "a group size of \(groupSize) does not divide the \(ranks) rank(s) evenly"
}

/// Handle of a non-blocking collective started on a `Communicator`; pass it to `test`.
public struct CommRequest: Hashable, Sendable {
    /// Position of the request among all non-blocking collectives this communicator started.
    public let serial: Int
    /// Wraps a serial number.
    public init(serial: Int) { self.serial = serial }
}

extension Communicator {
    /// Whether this is rank 0.
    public var isRoot: Bool { rank == 0 }

    /// `defaultCollectiveTimeout`; setting it does nothing (for communicators that never wait).
    public var collectiveTimeout: Double {
        get { defaultCollectiveTimeout }
        set {}
    }

    /// Always nil; setting it does nothing (for communicators that never wait).
    public var currentStep: Int? {
        get { nil }
        set {}
    }

    /// Groups of one rank only (the identity group); communicators without sub-groups use this.
    public func makeRankGroup(groupSize: Int) throws -> RankGroup {
        if let problem = rankGroupProblem(groupSize: groupSize, ranks: size) {
            throw CSGDError(problem)
        }
        if groupSize != 1 {
            throw CSGDError("this communicator has no groups of \(groupSize) ranks")
        }
        return SingleRankGroup(rank: rank)
    }

    /// Sums a whole `FloatBuffer` over all ranks, in place.
    public func allreduceSum(_ buffer: FloatBuffer) {
        allreduceSum(buffer.pointer, count: buffer.count)
    }

    /// Turns a sum over ranks into the mean: `buffer[i] *= 1/size` (multiplying by the
    /// reciprocal, the one rounding every rank-average in csgd-dist uses).
    public func divideBySize(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        let inv = 1 / Float(size)
        for i in 0..<count { buffer[i] *= inv }
    }

    /// Copies `root`'s `FloatBuffer` contents to every rank.
    public func broadcast(_ buffer: FloatBuffer, root: Int = 0) {
        broadcast(buffer.pointer, count: buffer.count, root: root)
    }
}

/// What the launcher told this process through its environment (Open MPI's
/// `OMPI_COMM_WORLD_*` variables). For logging only: the algorithm never branches on it.
public struct LaunchEnvironment: Sendable, Equatable {
    /// `OMPI_COMM_WORLD_SIZE`, or nil when not started by mpirun.
    public let worldSize: Int?
    /// `OMPI_COMM_WORLD_RANK`, or nil when not started by mpirun.
    public let worldRank: Int?

    /// Reads the launcher variables from `environment` (the process environment by default).
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        worldSize = environment["OMPI_COMM_WORLD_SIZE"].flatMap { Int($0) }
        worldRank = environment["OMPI_COMM_WORLD_RANK"].flatMap { Int($0) }
    }

    /// Whether the process was started by Open MPI's mpirun/mpiexec.
    public var underMPIRun: Bool { worldSize != nil }

    /// A few words for logs: `started by mpirun` or `MPI singleton, no mpirun`.
    public var summary: String {
        underMPIRun ? "started by mpirun" : "MPI singleton, no mpirun"
    }
}

/// Creates the job's communicator: always an `MPICommunicator`, which is rank 0 of 1 when the
/// binary runs without mpirun. Warns on stderr if mpirun's advertised size disagrees with
/// MPI_COMM_WORLD (a binary linked against a different MPI than the launcher).
/// - Throws: `CSGDError` if MPI cannot be initialised.
public func makeCommunicator() throws -> Communicator {
    let launch = LaunchEnvironment()
    let comm = try MPICommunicator.initialize()
    if let expected = launch.worldSize, expected != comm.size {
        writeStderr(
            "rank \(comm.rank): warning: mpirun started \(expected) ranks but MPI_COMM_WORLD "
                + "has \(comm.size); is csgd-dist linked against the same MPI as mpirun?")
    }
    return comm
}

/// Prints `items` (space-separated, like `print`) on rank 0 only, then flushes stdout.
public func print0(_ comm: Communicator, _ items: Any...) {
    if !comm.isRoot { return }
    print(items.map { "\($0)" }.joined(separator: " "))
    fflush(stdout)
}

/// Seconds for messages: `3`, `0.5`, `300` (shortest `%g` form).
func formatSeconds(_ seconds: Double) -> String {
    String(format: "%g", seconds)
}

/// Writes one line to stderr, unbuffered.
func writeStderr(_ line: String) {
    fflush(stdout)
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// This machine's host name (`gethostname`), or `localhost` if it cannot be read.
func localHostName() -> String {
    var name = [CChar](repeating: 0, count: 256)
    if gethostname(&name, name.count - 1) != 0 { return "localhost" }
    return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
