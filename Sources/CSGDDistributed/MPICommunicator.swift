// The Communicator over Open MPI's MPI_COMM_WORLD, and the one place MPI return codes are checked.
//
// MPI is initialised once per process (it cannot be re-initialised), with MPI_THREAD_FUNNELED
// and MPI_ERRORS_RETURN, so every failure comes back as a code to `mpiCheck`, which names the
// call and the rank and then aborts the whole job instead of letting the other ranks hang.
// Without mpirun the same code runs as an MPI singleton: rank 0 of 1.
//
// Every blocking collective is its non-blocking form (MPI_Iallreduce, MPI_Ibcast, …) followed
// by `wait`, an MPI_Testall loop with a deadline (`collectiveTimeout`): a rank whose collective
// does not complete in time names the collective and the step on stderr and aborts the job,
// instead of spinning forever behind a stuck or dead rank. The loop spins briefly, then naps
// between tests so a long wait does not burn a core; Open MPI has no progress thread, so these
// tests are also what moves the collective forward.
//
// The gradient allreduce is an IN-PLACE MPI_Iallreduce. For that, Open MPI 4.1's libnbc picks a
// binomial reduce to rank 0 followed by a broadcast back: every byte crosses rank 0's link
// twice, about twice a reduce-scatter + allgather, and more as ranks grow (measured on a
// 100 Mbit/s two-namespace bed: ResNet-20's gradient 179 ms vs 92 ms; issue [2/5 cluster]).
// So before MPI_Init we ask libnbc for Rabenseifner's algorithm (reduce-scatter by recursive
// halving, then allgather: bandwidth-optimal, what docs/scaling.md's model assumes) unless the
// user set `coll_libnbc_iallreduce_algorithm` themselves. The choice depends only on the rank
// count, never on where ranks run, so N ranks on N hosts still equal N ranks on one host bit
// for bit.
//
// No side effect sits inside `precondition`/`assert`: release builds use -Ounchecked, which
// drops them.

import CMPI
import CSGDCore
import Foundation

/// Exit code of a job ended by a failed MPI call.
let mpiFailureExitCode: Int32 = 1

/// Exit code of a job ended because a collective did not complete within the timeout.
let collectiveTimeoutExitCode: Int32 = 1

/// This process's rank once known, for error messages (`-1` before MPI_Comm_rank).
nonisolated(unsafe) private var knownWorldRank = -1

/// Checks an MPI return code. On failure prints `rank R: MPI_<what> failed: <MPI_Error_string>`
/// to stderr and aborts the whole job; it never returns in that case.
@inline(__always)
func mpiCheck(_ code: Int32, _ what: String) {
    if code != MPI_SUCCESS { mpiFailed(code, what) }
}

@inline(never)
private func mpiFailed(_ code: Int32, _ what: String) -> Never {
    mpiAbort(code: mpiFailureExitCode, message: "MPI_\(what) failed: \(mpiErrorString(code))")
}

/// The text `MPI_Error_string` gives for `code` (callable before MPI_Init).
func mpiErrorString(_ code: Int32) -> String {
    var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    if MPI_Error_string(code, &text, &length) != MPI_SUCCESS { return "MPI error code \(code)" }
    let bytes = text.prefix(Int(max(0, length))).map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Whether MPI is initialised and not yet finalised, i.e. MPI_Abort is allowed.
private func mpiIsActive() -> Bool {
    var initialized: Int32 = 0
    var finalized: Int32 = 0
    if MPI_Initialized(&initialized) != MPI_SUCCESS { return false }
    if MPI_Finalized(&finalized) != MPI_SUCCESS { return false }
    return initialized != 0 && finalized == 0
}

/// Prints `rank R: message` to stderr, then ends every rank of the job (MPI_Abort), or just
/// this process if MPI is not running.
func mpiAbort(code: Int32, message: String) -> Never {
    let rank: String
    if knownWorldRank >= 0 {
        rank = "\(knownWorldRank)"
    } else {
        rank = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "?"
    }
    writeStderr("rank \(rank): \(message)")
    if mpiIsActive() { _ = MPI_Abort(csgd_mpi_comm_world(), code) }
    exit(code)
}

/// The environment form of Open MPI's `coll_libnbc_iallreduce_algorithm` (see the file
/// comment).
public let iallreduceAlgorithmVariable = "OMPI_MCA_coll_libnbc_iallreduce_algorithm"

/// libnbc's number for Rabenseifner's allreduce (0 ignore, 1 ring, 2 binomial, 3 rabenseifner,
/// 4 recursive doubling in Open MPI 4.1).
public let preferredIallreduceAlgorithm = 3

/// The communicator over MPI_COMM_WORLD; one instance per process (see `initialize()`).
///
/// Not thread-safe: make every call from the thread that initialised MPI (FUNNELED).
public final class MPICommunicator: Communicator {
    /// This process's rank in MPI_COMM_WORLD.
    public let rank: Int
    /// Number of ranks in MPI_COMM_WORLD (1 without mpirun).
    public let size: Int
    /// `MPI_Get_processor_name`.
    public let processorName: String
    /// The thread support level MPI provided (`MPI_THREAD_FUNNELED` or higher).
    public let threadLevel: Int
    /// Elements per MPI call for long buffers; at most `maxCollectiveChunkElements` is sensible.
    /// Must be the same on every rank. Tests lower it to exercise the chunking across ranks.
    public var maxChunkElements = maxCollectiveChunkElements
    /// Whether `finalize()` has run; no collective may be called afterwards.
    public private(set) var isFinalized = false
    /// Seconds a collective may wait for the other ranks; past it this rank prints which
    /// collective (and `currentStep`) did not complete and aborts the job. Must be > 0.
    public var collectiveTimeout = defaultCollectiveTimeout
    /// The latest optimizer step started, named in the timeout message; nil before the first.
    public var currentStep: Int?
    /// Seconds `wait` tests back to back, as MPI_Wait would (the tests drive the transfer).
    static let spinSeconds = 0.05
    /// Seconds of waiting after which `wait` naps `napSeconds` between tests (before that it
    /// only yields the core between tests).
    static let yieldSeconds = 1.0
    /// Nap between two tests once a wait is longer than `yieldSeconds`.
    static let napSeconds = 1e-3
    /// Longest gap between two tests of a wait that counts towards the timeout.
    static let maxCountedGapSeconds = 0.5

    private let world: MPI_Comm?
    /// MPI requests of the outstanding non-blocking collectives, one per chunk (MPI sets
    /// completed ones to MPI_REQUEST_NULL); emptied once all of them are complete.
    private var requests: [MPI_Request?] = []
    /// Each outstanding `CommRequest`'s slice of `requests`, from serial `firstSerial` on.
    private var spans: [Range<Int>] = []
    private var firstSerial = 0

    nonisolated(unsafe) private static var shared: MPICommunicator?
    private static let lock = NSLock()

    private init(rank: Int, size: Int, processorName: String, threadLevel: Int) {
        self.rank = rank
        self.size = size
        self.processorName = processorName
        self.threadLevel = threadLevel
        world = csgd_mpi_comm_world()
    }

    /// Initialises MPI once per process (`MPI_Init_thread` with FUNNELED, skipped if something
    /// else already initialised it) and sets MPI_ERRORS_RETURN on MPI_COMM_WORLD. Later calls
    /// return the same instance.
    /// - Throws: `CSGDError` if MPI was already finalised (it cannot be re-initialised) or
    ///   cannot provide FUNNELED thread support.
    public static func initialize() throws -> MPICommunicator {
        lock.lock()
        defer { lock.unlock() }
        if let comm = shared {
            if comm.isFinalized {
                throw CSGDError("MPI was finalized in this process and cannot be initialised again")
            }
            return comm
        }
        var flag: Int32 = 0
        mpiCheck(MPI_Finalized(&flag), "Finalized")
        if flag != 0 {
            throw CSGDError("MPI was finalized in this process and cannot be initialised again")
        }
        mpiCheck(MPI_Initialized(&flag), "Initialized")
        var provided: Int32 = 0
        if flag == 0 {
            // Read by Open MPI at MPI_Init; `0` keeps a value the user (or mpirun -mca) set.
            setenv(iallreduceAlgorithmVariable, String(preferredIallreduceAlgorithm), 0)
            let required = Int32(MPI_THREAD_FUNNELED)
            mpiCheck(MPI_Init_thread(nil, nil, required, &provided), "Init_thread")
        } else {
            mpiCheck(MPI_Query_thread(&provided), "Query_thread")
        }
        let world = csgd_mpi_comm_world()
        mpiCheck(MPI_Comm_set_errhandler(world, csgd_mpi_errors_return()), "Comm_set_errhandler")
        var rank: Int32 = 0
        var size: Int32 = 0
        mpiCheck(MPI_Comm_rank(world, &rank), "Comm_rank")
        knownWorldRank = Int(rank)
        mpiCheck(MPI_Comm_size(world, &size), "Comm_size")
        if Int(provided) < Int(MPI_THREAD_FUNNELED) {
            throw CSGDError(
                "MPI provides thread level \(provided); csgd-dist needs MPI_THREAD_FUNNELED",
                hint: "use an MPI build with thread support")
        }
        var name = [CChar](repeating: 0, count: Int(MPI_MAX_PROCESSOR_NAME) + 1)
        var length: Int32 = 0
        mpiCheck(MPI_Get_processor_name(&name, &length), "Get_processor_name")
        let nameBytes = name.prefix(Int(max(0, length))).map { UInt8(bitPattern: $0) }
        let comm = MPICommunicator(
            rank: Int(rank), size: Int(size),
            processorName: String(decoding: nameBytes, as: UTF8.self),
            threadLevel: Int(provided))
        shared = comm
        return comm
    }

    /// The non-blocking allreduce algorithm Open MPI's libnbc uses in this process, read back
    /// through MPI_T (nil where the variable does not exist: another MPI, or libnbc not built).
    public var iallreduceAlgorithm: Int? {
        var value: Int32 = 0
        return csgd_mpi_t_read_int("coll_libnbc_iallreduce_algorithm", &value) == 0
            ? Int(value) : nil
    }

    /// Calls `MPI_Finalize` (collective: every rank must call it), after a barrier bounded by
    /// `collectiveTimeout` so a stuck rank cannot hang the others inside MPI_Finalize.
    /// Idempotent. Call it once at the end of the program; MPI cannot be used or initialised
    /// again afterwards.
    public func finalize() {
        if isFinalized { return }
        var flag: Int32 = 0
        mpiCheck(MPI_Finalized(&flag), "Finalized")
        if flag == 0 {
            if size > 1 { timedBarrier("barrier before MPI_Finalize") }
            mpiCheck(MPI_Finalize(), "Finalize")
        }
        isFinalized = true
    }

    /// In-place allreduce (SUM) in pieces of at most `maxChunkElements`: `MPI_Iallreduce`,
    /// then a wait of at most `collectiveTimeout` per piece.
    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        forEachChunk(count, "Iallreduce") { offset, n in
            var request: MPI_Request? = csgd_mpi_request_null()
            mpiCheck(
                MPI_Iallreduce(
                    csgd_mpi_in_place(), buffer + offset, n, csgd_mpi_float(), csgd_mpi_sum(),
                    world, &request),
                "Iallreduce")
            wait(&request, "allreduce (sum of \(count) floats)")
        }
    }

    /// In-place `MPI_Iallreduce` (SUM), one request per piece of at most `maxChunkElements`.
    public func startAllreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
        -> CommRequest
    {
        let start = requests.count
        forEachChunk(count, "Iallreduce") { offset, n in
            var request: MPI_Request? = csgd_mpi_request_null()
            mpiCheck(
                MPI_Iallreduce(
                    csgd_mpi_in_place(), buffer + offset, n, csgd_mpi_float(), csgd_mpi_sum(),
                    world, &request),
                "Iallreduce")
            requests.append(request)
        }
        spans.append(start..<requests.count)
        return CommRequest(serial: firstSerial + spans.count - 1)
    }

    /// `MPI_Testall` over the request's pieces (which also progresses every other request).
    public func test(_ request: CommRequest) -> Bool {
        requireActive("Testall")
        let index = request.serial - firstSerial
        if index < 0 { return true }  // retired by testAll/waitAll, so complete
        if index >= spans.count {
            mpiAbort(
                code: mpiFailureExitCode, message: "test: unknown request \(request.serial)")
        }
        let span = spans[index]
        if span.isEmpty { return true }
        var flag: Int32 = 0
        requests.withUnsafeMutableBufferPointer { p in
            mpiCheck(
                MPI_Testall(
                    Int32(span.count), p.baseAddress! + span.lowerBound, &flag,
                    csgd_mpi_statuses_ignore()),
                "Testall")
        }
        return flag != 0
    }

    /// `MPI_Testall` over every outstanding request; forgets them once all are complete.
    @discardableResult
    public func testAll() -> Bool {
        requireActive("Testall")
        if requests.isEmpty {
            retireRequests()
            return true
        }
        var flag: Int32 = 0
        let n = Int32(requests.count)
        requests.withUnsafeMutableBufferPointer { p in
            mpiCheck(
                MPI_Testall(n, p.baseAddress!, &flag, csgd_mpi_statuses_ignore()), "Testall")
        }
        if flag != 0 { retireRequests() }
        return flag != 0
    }

    /// Waits (at most `collectiveTimeout`) for every outstanding request.
    public func waitAll() {
        requireActive("Testall")
        if !requests.isEmpty {
            let n = requests.count
            let what = "overlapped allreduce (\(spans.count) bucket(s))"
            requests.withUnsafeMutableBufferPointer { p in wait(p.baseAddress!, n, what) }
        }
        retireRequests()
    }

    private func retireRequests() {
        firstSerial += spans.count
        spans.removeAll(keepingCapacity: true)
        requests.removeAll(keepingCapacity: true)
    }

    /// In-place allreduce (SUM) of doubles (`MPI_Iallreduce` and a timed wait).
    public func allreduceSum(_ values: inout [Double]) {
        let count = values.count
        values.withUnsafeMutableBufferPointer { p in
            forEachChunk(count, "Iallreduce") { offset, n in
                var request: MPI_Request? = csgd_mpi_request_null()
                mpiCheck(
                    MPI_Iallreduce(
                        csgd_mpi_in_place(), p.baseAddress! + offset, n, csgd_mpi_double(),
                        csgd_mpi_sum(), world, &request),
                    "Iallreduce")
                wait(&request, "allreduce (sum of \(count) doubles)")
            }
        }
    }

    /// Allreduce (MAX) of one double (`MPI_Iallreduce` and a timed wait).
    public func allreduceMax(_ value: Double) -> Double {
        requireActive("Iallreduce")
        var input = value
        var output = 0.0
        withUnsafePointer(to: &input) { i in
            withUnsafeMutablePointer(to: &output) { o in
                var request: MPI_Request? = csgd_mpi_request_null()
                mpiCheck(
                    MPI_Iallreduce(i, o, 1, csgd_mpi_double(), csgd_mpi_max(), world, &request),
                    "Iallreduce")
                wait(&request, "allreduce (max of 1 double)")
            }
        }
        return output
    }

    /// Broadcast of floats in pieces of at most `maxChunkElements` (`MPI_Ibcast` and a timed
    /// wait per piece). An invalid root is reported by MPI and aborts the job.
    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        forEachChunk(count, "Ibcast") { offset, n in
            var request: MPI_Request? = csgd_mpi_request_null()
            mpiCheck(
                MPI_Ibcast(
                    buffer + offset, n, csgd_mpi_float(), Int32(clamping: root), world, &request),
                "Ibcast")
            wait(&request, "broadcast (\(count) floats from rank \(root))")
        }
    }

    /// Broadcasts the length, resizes `bytes` on the other ranks, then broadcasts the bytes.
    public func broadcast(bytes: inout [UInt8], root: Int) {
        requireActive("Ibcast")
        let root32 = Int32(clamping: root)
        var length = UInt64(bytes.count)
        withUnsafeMutablePointer(to: &length) { p in
            var request: MPI_Request? = csgd_mpi_request_null()
            mpiCheck(MPI_Ibcast(p, 1, csgd_mpi_uint64(), root32, world, &request), "Ibcast")
            wait(&request, "broadcast (length of a byte block from rank \(root))")
        }
        if length > UInt64(Int.max) {
            mpiAbort(code: mpiFailureExitCode, message: "broadcast: impossible length \(length)")
        }
        let count = Int(length)
        if rank != root { bytes = [UInt8](repeating: 0, count: count) }
        bytes.withUnsafeMutableBytes { raw in
            forEachChunk(count, "Ibcast") { offset, n in
                var request: MPI_Request? = csgd_mpi_request_null()
                mpiCheck(
                    MPI_Ibcast(
                        raw.baseAddress! + offset, n, csgd_mpi_byte(), root32, world, &request),
                    "Ibcast")
                wait(&request, "broadcast (\(count) bytes from rank \(root))")
            }
        }
    }

    /// Allgather of one `UInt64` per rank (`MPI_Iallgather` and a timed wait).
    public func allgather(_ value: UInt64) -> [UInt64] {
        requireActive("Iallgather")
        var input = value
        var output = [UInt64](repeating: 0, count: size)
        withUnsafePointer(to: &input) { i in
            output.withUnsafeMutableBufferPointer { o in
                var request: MPI_Request? = csgd_mpi_request_null()
                mpiCheck(
                    MPI_Iallgather(
                        i, 1, csgd_mpi_uint64(), o.baseAddress!, 1, csgd_mpi_uint64(), world,
                        &request),
                    "Iallgather")
                wait(&request, "allgather (1 uint64 per rank)")
            }
        }
        return output
    }

    /// Barrier (`MPI_Ibarrier` and a timed wait).
    public func barrier() {
        requireActive("Ibarrier")
        timedBarrier("barrier")
    }

    private func timedBarrier(_ what: String) {
        var request: MPI_Request? = csgd_mpi_request_null()
        mpiCheck(MPI_Ibarrier(world, &request), "Ibarrier")
        wait(&request, what)
    }

    /// Tests `count` requests until all are complete: back to back for `spinSeconds`, then
    /// yielding the core between tests, then (past `yieldSeconds`) napping `napSeconds`
    /// between tests. Past `collectiveTimeout` of waiting it reports `what` and the step and
    /// aborts. A gap between two tests counts at most `maxCountedGapSeconds`: a rank that was
    /// itself stopped (SIGSTOP, swapped out) must not blame the others once it runs again.
    private func wait(
        _ requests: UnsafeMutablePointer<MPI_Request?>, _ count: Int,
        _ what: @autoclosure () -> String
    ) {
        var flag: Int32 = 0
        mpiCheck(MPI_Testall(Int32(count), requests, &flag, csgd_mpi_statuses_ignore()), "Testall")
        if flag != 0 { return }
        var last = monotonicSeconds()
        var waited = 0.0
        while true {
            mpiCheck(
                MPI_Testall(Int32(count), requests, &flag, csgd_mpi_statuses_ignore()), "Testall")
            if flag != 0 { return }
            let now = monotonicSeconds()
            waited += min(now - last, Self.maxCountedGapSeconds)
            last = now
            if waited >= collectiveTimeout { timedOut(what()) }
            if waited >= Self.yieldSeconds {
                usleep(useconds_t(Self.napSeconds * 1e6))
            } else if waited >= Self.spinSeconds {
                sched_yield()
            }
        }
    }

    private func wait(_ request: inout MPI_Request?, _ what: @autoclosure () -> String) {
        withUnsafeMutablePointer(to: &request) { wait($0, 1, what()) }
    }

    @inline(never)
    private func timedOut(_ what: String) -> Never {
        mpiAbort(
            code: collectiveTimeoutExitCode,
            message: Self.timeoutMessage(
                collective: what, seconds: collectiveTimeout, step: currentStep, rank: rank,
                size: size))
    }

    /// The one line a rank prints when `collective` did not complete within `seconds`.
    static func timeoutMessage(
        collective: String, seconds: Double, step: Int?, rank: Int, size: Int
    ) -> String {
        let at = step.map { "at step \($0)" } ?? "before the first training step"
        let others = size == 2 ? "rank \(1 - rank)" : "another rank"
        return "error: collective \(collective) did not complete within "
            + "\(formatSeconds(seconds)) s \(at) (\(others) may be stuck or dead); aborting the job"
    }

    /// Prints `rank R: message` to stderr and calls `MPI_Abort`, which ends every rank.
    public func abort(code: Int32, message: String) -> Never {
        mpiAbort(code: code, message: message)
    }

    private func requireActive(_ what: String) {
        if isFinalized {
            mpiAbort(code: mpiFailureExitCode, message: "MPI_\(what) called after finalize()")
        }
    }

    /// Groups of `groupSize` consecutive ranks: a timed barrier (so a missing rank is named
    /// instead of hanging the split), then `MPI_Comm_split` with color rank ÷ g and key rank.
    public func makeRankGroup(groupSize: Int) throws -> RankGroup {
        if let problem = rankGroupProblem(groupSize: groupSize, ranks: size) {
            throw CSGDError(problem)
        }
        if groupSize == 1 { return SingleRankGroup(rank: rank) }
        requireActive("Comm_split")
        timedBarrier("barrier before splitting into groups of \(groupSize) ranks")
        var sub: MPI_Comm? = nil
        mpiCheck(
            MPI_Comm_split(world, Int32(rank / groupSize), Int32(rank), &sub), "Comm_split")
        mpiCheck(MPI_Comm_set_errhandler(sub, csgd_mpi_errors_return()), "Comm_set_errhandler")
        return MPIRankGroup(parent: self, comm: sub, size: groupSize, index: rank / groupSize)
    }

    /// In-place allreduce (SUM) of doubles over `comm` (a group's sub-communicator):
    /// `MPI_Iallreduce` and a timed wait per piece.
    fileprivate func allreduceSum(
        _ buffer: UnsafeMutablePointer<Double>, count: Int, over comm: MPI_Comm?, groupSize: Int
    ) {
        forEachChunk(count, "Iallreduce") { offset, n in
            var request: MPI_Request? = csgd_mpi_request_null()
            mpiCheck(
                MPI_Iallreduce(
                    csgd_mpi_in_place(), buffer + offset, n, csgd_mpi_double(), csgd_mpi_sum(),
                    comm, &request),
                "Iallreduce")
            wait(&request, "group allreduce (sum of \(count) doubles over \(groupSize) ranks)")
        }
    }

    /// Calls `body(offset, n)` for consecutive pieces covering `0..<count`.
    private func forEachChunk(_ count: Int, _ what: String, _ body: (Int, Int32) -> Void) {
        requireActive(what)
        if count < 0 {
            mpiAbort(code: mpiFailureExitCode, message: "MPI_\(what): negative count \(count)")
        }
        let step = max(1, min(maxChunkElements, Int(Int32.max)))
        var offset = 0
        while offset < count {
            let n = min(step, count - offset)
            body(offset, Int32(n))
            offset += n
        }
    }
}

/// A group of consecutive ranks over its own sub-communicator (`MPI_Comm_split`).
final class MPIRankGroup: RankGroup {
    let size: Int
    let index: Int
    private let parent: MPICommunicator
    private var comm: MPI_Comm?

    init(parent: MPICommunicator, comm: MPI_Comm?, size: Int, index: Int) {
        self.parent = parent
        self.comm = comm
        self.size = size
        self.index = index
    }

    /// Frees the sub-communicator unless MPI is already finalised (which freed it).
    deinit {
        if mpiIsActive() { _ = MPI_Comm_free(&comm) }
    }

    func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        parent.allreduceSum(buffer, count: count, over: comm, groupSize: size)
    }
}
