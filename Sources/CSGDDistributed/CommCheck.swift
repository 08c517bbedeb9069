// An end-to-end self-test of a Communicator, run by `csgd-dist check-comm` before long jobs.
//
// Every rank fills its data from a stream seeded by (seed, rank), so every rank can regenerate
// every other rank's data and compute the expected result of each collective locally. The
// allreduce data are small integers (plus rank+1), whose float sums are exact in any order, so
// the comparison is bitwise, not approximate.

import CSGDCore
import Foundation

/// Verifies allreduce, broadcast, allgather and barrier of a `Communicator` against results
/// every rank computes on its own.
public struct CommCheck {
    /// The outcome of `CommCheck.run` on one rank.
    public struct Report: Sendable {
        /// This rank.
        public let rank: Int
        /// Number of ranks.
        public let size: Int
        /// `Communicator.processorName` of this rank.
        public let host: String
        /// One entry per check, e.g. `allreduce ok (1000003 floats)` or `broadcast FAILED (…)`.
        public let results: [String]
        /// The subset of `results` that failed on this rank.
        public let failures: [String]
        /// Ranks on which some check failed (the same list on every rank).
        public let failedRanks: [Int]

        /// Whether every check passed on this rank.
        public var ok: Bool { failures.isEmpty }
        /// Whether every check passed on every rank.
        public var allRanksOK: Bool { failedRanks.isEmpty }
        /// `rank R/N on HOST: <results>: OK` (or `: FAILED`).
        public var line: String {
            "rank \(rank)/\(size) on \(host): " + results.joined(separator: ", ")
                + (ok ? ": OK" : ": FAILED")
        }
    }

    /// Runs every check; a collective call, so every rank must call it with the same `count`
    /// and `seed`. Never throws: mismatches are reported in the result.
    /// - Parameters:
    ///   - count: floats per rank for the allreduce and broadcast checks (at least 1).
    ///   - seed: seed of the per-rank data streams.
    public static func run(comm: Communicator, count: Int, seed: UInt64) -> Report {
        let n = max(count, 1)
        var results: [String] = []
        var failures: [String] = []
        func record(_ name: String, _ failure: String?, detail: String = "") {
            if let failure {
                let entry = "\(name) FAILED (\(failure))"
                results.append(entry)
                failures.append(entry)
            } else {
                results.append(detail.isEmpty ? "\(name) ok" : "\(name) ok (\(detail))")
            }
        }

        // 1. Float allreduce: sum of every rank's integer-valued stream.
        let data = FloatBuffer(count: n)
        fillAllreduceInput(data.pointer, count: n, seed: seed, rank: comm.rank)
        var mine = Checksum()
        mine.add(data.buffer)
        let expected = FloatBuffer(count: n)
        let scratch = FloatBuffer(count: n)
        var inputChecksums: [UInt64] = []
        for q in 0..<comm.size {
            fillAllreduceInput(scratch.pointer, count: n, seed: seed, rank: q)
            var h = Checksum()
            h.add(scratch.buffer)
            inputChecksums.append(h.value)
            for i in 0..<n { expected.pointer[i] += scratch.pointer[i] }
        }
        comm.allreduceSum(data.pointer, count: n)
        record(
            "allreduce", firstMismatch(data.pointer, expected.pointer, count: n),
            detail: "\(n) floats")
        var reduced = Checksum()
        reduced.add(data.buffer)
        comm.allreduceSum(data.pointer, count: 0)  // zero-length collectives must be no-ops

        // 1b. The same sum as non-blocking pieces started from the end (as the gradient
        // buckets do), progressed with test, finished with waitAll.
        fillAllreduceInput(data.pointer, count: n, seed: seed, rank: comm.rank)
        let cuts = [0, n / 3, n / 2, n]
        var started: [CommRequest] = []
        for k in stride(from: cuts.count - 1, to: 0, by: -1) {
            started.append(
                comm.startAllreduceSum(data.pointer + cuts[k - 1], count: cuts[k] - cuts[k - 1]))
            _ = comm.test(started[started.count - 1])
        }
        comm.waitAll()
        var pending = started.filter { !comm.test($0) }.count
        pending += comm.testAll() ? 0 : 1
        record(
            "iallreduce",
            pending > 0
                ? "\(pending) request(s) still pending after waitAll"
                : firstMismatch(data.pointer, expected.pointer, count: n),
            detail: "\(started.count) requests")

        // 2. Float broadcast from the last rank; the others start from a sentinel.
        let root = comm.size - 1
        if comm.rank == root {
            fillBroadcastInput(data.pointer, count: n, seed: seed, root: root)
        } else {
            data.pointer.update(repeating: -1, count: n)
        }
        fillBroadcastInput(expected.pointer, count: n, seed: seed, root: root)
        comm.broadcast(data.pointer, count: n, root: root)
        record(
            "broadcast", firstMismatch(data.pointer, expected.pointer, count: n),
            detail: "root \(root)")

        // 3. Double allreduce: exactly representable sums.
        var doubles = (0..<n).map { Double($0 % 1000) + 0.5 * Double(comm.rank) }
        comm.allreduceSum(&doubles)
        let s = Double(comm.size)
        let rankSum = 0.5 * s * (s - 1) / 2
        var doubleFailure: String?
        for i in 0..<n where doubles[i] != s * Double(i % 1000) + rankSum {
            doubleFailure = "at \(i): got \(doubles[i]), expected \(s * Double(i % 1000) + rankSum)"
            break
        }
        record("allreduce doubles", doubleFailure)

        // 4. Max.
        let maxGot = comm.allreduceMax(Double(comm.rank) - 0.5)
        let maxWant = Double(comm.size - 1) - 0.5
        record("max", maxGot == maxWant ? nil : "got \(maxGot), expected \(maxWant)")

        // 5. Allgather: every rank's input checksum, then the reduced-buffer checksums must agree.
        let gathered = comm.allgather(mine.value)
        var gatherFailure: String?
        if gathered != inputChecksums {
            let bad = (0..<comm.size).filter { q in
                q >= gathered.count || gathered[q] != inputChecksums[q]
            }
            gatherFailure = "input checksums differ for ranks \(bad)"
        }
        let replicas = comm.allgather(reduced.value)
        if gatherFailure == nil, Set(replicas).count != 1 {
            gatherFailure = "reduced-buffer checksums differ across ranks"
        }
        record("allgather", gatherFailure)

        // 6. Variable-length byte broadcast from another root; others start with other lengths.
        let byteRoot = comm.size > 1 ? 1 : 0
        let wantBytes = broadcastBytes(seed: seed, root: byteRoot)
        var bytes = comm.rank == byteRoot ? wantBytes : [UInt8](repeating: 7, count: comm.rank)
        comm.broadcast(bytes: &bytes, root: byteRoot)
        record(
            "bytes", bytes == wantBytes ? nil : "got \(bytes.count) bytes, wrong content",
            detail: "\(wantBytes.count) from root \(byteRoot)")

        // 7. Barrier, then agree on which ranks failed.
        comm.barrier()
        let flags = comm.allgather(failures.isEmpty ? 0 : 1)
        let failedRanks = flags.indices.filter { flags[$0] != 0 }
        return Report(
            rank: comm.rank, size: comm.size, host: comm.processorName, results: results,
            failures: failures, failedRanks: failedRanks)
    }

    /// Rank `rank`'s allreduce input: integers in `[rank+1, rank+1024]`.
    static func fillAllreduceInput(
        _ p: UnsafeMutablePointer<Float>, count: Int, seed: UInt64, rank: Int
    ) {
        var rng = Rng.derived(seed: seed, UInt64(rank))
        let offset = Float(rank + 1)
        for i in 0..<count { p[i] = Float(rng.next() >> 54) + offset }
    }

    /// The root's broadcast data: arbitrary floats in [0, 1).
    static func fillBroadcastInput(
        _ p: UnsafeMutablePointer<Float>, count: Int, seed: UInt64, root: Int
    ) {
        var rng = Rng.derived(seed: seed, UInt64(root), 0xBC)
        for i in 0..<count { p[i] = rng.nextFloat() }
    }

    /// The byte-broadcast payload: a text header plus a seeded, seed-dependent-length tail.
    static func broadcastBytes(seed: UInt64, root: Int) -> [UInt8] {
        var rng = Rng.derived(seed: seed, UInt64(root), 0xB7)
        var bytes = Array("csgd-dist check-comm seed \(seed) root \(root)\n".utf8)
        for _ in 0..<(1000 + rng.nextInt(below: 1000)) {
            bytes.append(UInt8(truncatingIfNeeded: rng.next() >> 56))
        }
        return bytes
    }

    /// nil if equal bitwise, else a description of the mismatches.
    static func firstMismatch(
        _ got: UnsafeMutablePointer<Float>, _ want: UnsafeMutablePointer<Float>, count: Int
    ) -> String? {
        var first = -1
        var wrong = 0
        for i in 0..<count where got[i].bitPattern != want[i].bitPattern {
            if first < 0 { first = i }
            wrong += 1
        }
        if first < 0 { return nil }
        return "\(wrong) of \(count) wrong; first at \(first): got \(got[first]), "
            + "expected \(want[first])"
    }
}
