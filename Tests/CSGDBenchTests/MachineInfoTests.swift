import Foundation
import XCTest

@testable import CSGDBench

/// The machine header every `bench` command prints first.
final class MachineInfoTests: XCTestCase {
    func testParsesModelAndVectorFlagsOfTheFirstProcessor() {
        let text = """
            processor\t: 0
            model name\t: AMD EPYC 9R14
            flags\t\t: fpu sse sse2 ssse3 fma sse4_2 avx avx2 avx512f avx512bw avx512vl avx512_vnni

            processor\t: 1
            model name\t: other
            flags\t\t: sse2
            """
        let (model, features) = MachineInfo.parseCPUInfo(text)
        XCTAssertEqual(model, "AMD EPYC 9R14")
        XCTAssertEqual(
            features,
            ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"])
        XCTAssertEqual(MachineInfo.parseCPUInfo("").model, "?")
        XCTAssertEqual(MachineInfo.parseCPUInfo("").features, [])
    }

    func testJSONLineIsAnObjectTheResultParserSkips() throws {
        let m = MachineInfo(
            targetCPU: "znver3", targetFeatures: ["avx", "avx2", "fma"], cpuModel: "CPU \"x\"",
            cpuFeatures: ["avx", "avx2", "fma"], blasCore: "Zen", blasThreads: 2)
        XCTAssertTrue(m.jsonLine.hasPrefix("{\"name\":\"machine\","), m.jsonLine)
        let o = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(m.jsonLine.utf8)) as? [String: Any])
        XCTAssertEqual(o["target_cpu"] as? String, "znver3")
        XCTAssertEqual(o["target_features"] as? String, "avx avx2 fma")
        XCTAssertEqual(o["cpu"] as? String, "CPU \"x\"")
        XCTAssertEqual(o["openblas_core"] as? String, "Zen")
        XCTAssertEqual(o["openblas_threads"] as? Int, 2)
        XCTAssertNil(BenchResult(jsonLine: m.jsonLine), "not a result row")
        XCTAssertEqual(
            m.headerLine,
            "machine: built for znver3 (avx avx2 fma); runs on CPU \"x\" (avx avx2 fma); "
                + "OpenBLAS Zen, 2 thread(s)")
        var suite = m
        suite.blasThreads = nil
        XCTAssertTrue(suite.jsonLine.contains("\"openblas_threads\":null"), suite.jsonLine)
    }

    /// This binary runs, so the running CPU has every feature its build target enabled; a
    /// mismatch means the recorded target or the cpuinfo parsing is wrong.
    func testCurrentBuildTargetIsConsistentWithTheRunningCPU() {
        let m = MachineInfo.current()
        XCTAssertFalse(m.targetCPU.isEmpty)
        XCTAssertFalse(m.blasCore.isEmpty)
        #if os(Linux) && arch(x86_64)
            XCTAssertEqual(m.missingFeatures, [], m.headerLine)
        #endif
    }
}
