// The multi-host path on a simulated cluster (launch/netbed: one network namespace per host,
// its own TCP stack and hostname, links shaped with tbf, mpirun reaching each host's daemon
// through an ns-agent): ranks on separate "hosts" over TCP give the same weights, bit for bit,
// as the same ranks on one host, and a host whose link goes down ends the job in seconds with
// nothing left running on it. Root only (namespaces); CI runs as root.

import CSGDTestSupport
import Foundation
import XCTest

final class NetworkBedTests: XCTestCase {
    static let hosts = 2
    static let ip = "/usr/sbin/ip"
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    var dir = ""
    var bed: String { root + "/launch/netbed/netbed.sh" }

    func bash(_ args: [String], timeout: Double = 60) throws -> CLIResult {
        try CLIRunner.runProcess("/bin/bash", [bed] + args, env: [:], timeout: timeout)
    }

    override func setUpWithError() throws {
        if getuid() != 0 { throw XCTSkip("network namespaces need root (CI runs as root)") }
        try CLIRunner.requireMPIRun()
        if !FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist") {
            throw XCTSkip("dataset-fashion-mnist is not installed (launch/setup.sh installs it)")
        }
        _ = try bash(["down", "\(Self.hosts)"])  // a bed left by a killed run
        let up = try bash(["up", "\(Self.hosts)", "100mbit"])
        XCTAssertEqual(up.exitCode, 0, up.output)
        dir = NSTemporaryDirectory() + "csgd-netbed-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        if getuid() == 0 { _ = try? bash(["down", "\(Self.hosts)"]) }
        if !dir.isEmpty { try? FileManager.default.removeItem(atPath: dir) }
    }

    func train(_ out: String, epochs: Int, timeout: Double = 30) -> [String] {
        [
            try! CLIRunner.executablePath(), "train", "--width-multiplier", "0.25",
            "--train-limit", "256", "--test-limit", "64", "--batch-size", "8", "--epochs",
            "\(epochs)", "--log-every", "1000", "--collective-timeout-s", "\(Int(timeout))",
            "--out-dir", out,
        ]
    }

    func testRanksOnTwoHostsOverTCPEqualTheSameRanksOnOneHostBitwise() throws {
        let bedRun = try bash(["run", "\(Self.hosts)", "--"] + train(dir + "/bed", epochs: 1))
        XCTAssertEqual(bedRun.exitCode, 0, bedRun.output)
        let local = try CLIRunner.mpirun(
            ranks: Self.hosts, args: Array(train(dir + "/one", epochs: 1).dropFirst()))
        XCTAssertEqual(local.exitCode, 0, local.output)
        try assertSameTensors(
            dir + "/bed/model.safetensors", dir + "/one/model.safetensors", "2 hosts vs 1 host")
    }

    func testAHostWhoseLinkGoesDownEndsTheJobAndLeavesNothingRunning() throws {
        let cut = DispatchSemaphore(value: 0)
        let once = NSLock()
        nonisolated(unsafe) var done = false
        let r = try CLIRunner.runProcess(
            "/bin/bash", [bed, "run", "\(Self.hosts)", "--"] + train(dir + "/cut", epochs: 50),
            env: [:], timeout: 120
        ) { _, output in
            // Once training is under way, take host 2's link down (its bridge-side veth end).
            once.lock()
            defer { once.unlock() }
            if !done && output.contains("train epoch 1/") {
                done = true
                cut.signal()
                let p = Process()
                p.executableURL = URL(fileURLWithPath: Self.ip)
                p.arguments = ["link", "set", "csgd-p\(Self.hosts)", "down"]
                try? p.run()
                p.waitUntilExit()
            }
        }
        XCTAssertEqual(cut.wait(timeout: .now()), .success, "training never started:\n\(r.output)")
        XCTAssertFalse(r.timedOut, "the job hung after the link went down:\n\(r.output)")
        XCTAssertNotEqual(r.exitCode, 0, r.output)
        // The job noticed: the lost daemon (keepalive) or the collective timeout, whichever first.
        XCTAssertTrue(
            r.output.contains("lost communication with a remote daemon")
                || r.output.contains("did not complete within"), r.output)
        // The cut-off host's daemon loses mpirun the same way and kills its rank.
        var left = -1
        for _ in 0..<30 {
            let pids = try CLIRunner.runProcess(
                Self.ip, ["netns", "pids", "csgd-h\(Self.hosts)"], env: [:], timeout: 10)
            left = pids.output.split(separator: "\n").count
            if left == 0 { break }
            Thread.sleep(forTimeInterval: 1)
        }
        XCTAssertEqual(left, 0, "processes left running on the cut-off host 30 s after the job")
    }
}
