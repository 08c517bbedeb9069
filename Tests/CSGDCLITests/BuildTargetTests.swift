import CSGDBuildInfo
import CSGDTestSupport
import Foundation
import XCTest

/// The built `csgd-dist` is compiled for the CPU Package.swift names (CSGD_TARGET_CPU, default
/// `native`): its own kernels use that CPU's vector registers, and no code of ours calls the
/// `fmaf` library function (what SIMD `addProduct` becomes without an FMA target). Reads the
/// binary's disassembly, so it needs objdump (binutils, installed by launch/setup.sh); without
/// it the test fails rather than passing unchecked.
final class BuildTargetTests: XCTestCase {
    /// The build target recorded by CSGDBuildInfo (compiled in this same build).
    let target = String(cString: csgd_build_target_cpu())
    let features = String(cString: csgd_build_vector_features()).split(separator: " ")
        .map(String.init)

    /// `objdump -d` of the binary as (function symbol, its instruction lines).
    func disassembly() throws -> [(symbol: String, lines: [Substring])] {
        let objdump = "/usr/bin/objdump"
        guard FileManager.default.isExecutableFile(atPath: objdump) else {
            XCTFail("\(objdump) not found: install binutils (launch/setup.sh does)")
            return []
        }
        let exe = try CLIRunner.executablePath()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: objdump)
        p.arguments = ["-d", "--no-show-raw-insn", exe]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "objdump -d \(exe)")
        var functions: [(symbol: String, lines: [Substring])] = []
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            // A function starts with "<address> <symbol>:".
            if line.hasSuffix(">:"), let open = line.firstIndex(of: "<") {
                functions.append(
                    (
                        String(
                            line[line.index(after: open)..<line.index(line.endIndex, offsetBy: -2)]),
                        []
                    ))
            } else if !functions.isEmpty {
                functions[functions.count - 1].lines.append(line)
            }
        }
        XCTAssertFalse(functions.isEmpty, "no functions in the disassembly of \(exe)")
        return functions
    }

    func testNoFmafLibraryCalls() throws {
        if target.hasPrefix("generic") {
            throw XCTSkip(
                "built with no target CPU (\(target)): without FMA, SIMD addProduct is an fmaf call"
            )
        }
        let callers = try disassembly().filter { f in
            f.lines.contains { $0.contains("call") && $0.contains("<fmaf@plt>") }
        }.map(\.symbol)
        XCTAssertEqual(callers, [], "fmaf library calls in a build for \(target)")
    }

    /// The target CPU reached the Swift kernels, not only the C target that records it.
    func testKernelsUseTheTargetsVectorRegisters() throws {
        #if !arch(x86_64)
            throw XCTSkip("checks x86-64 register names")
        #endif
        guard features.contains("avx") else {
            throw XCTSkip("target \(target) has no AVX (features: \(features))")
        }
        let kernels = try disassembly().filter { $0.symbol.hasPrefix("$s11CSGDKernels") }
        XCTAssertFalse(kernels.isEmpty, "no CSGDKernels functions found")
        let wide = kernels.reduce(0) { n, f in
            n + f.lines.filter { $0.contains("%ymm") || $0.contains("%zmm") }.count
        }
        XCTAssertGreaterThan(
            wide, 0, "target \(target) (\(features)) but CSGDKernels uses no ymm/zmm register")
    }
}
