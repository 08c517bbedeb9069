// What produced a benchmark figure: the CPU the binary was built for (Package.swift,
// CSGD_TARGET_CPU; recorded by the CSGDBuildInfo C target), the vector features that target
// enabled, the CPU it runs on with its vector features (/proc/cpuinfo), and OpenBLAS's kernel
// family and thread count. Every `bench` command prints it first: a `machine:` line above the
// table, or one `{"name":"machine",…}` JSON line (no `value`/`unit`, so
// `BenchResult(jsonLine:)` skips it).

import CSGDBuildInfo
import CSGDCore
import CSGDKernels
import Foundation

/// The build target, the running CPU and the BLAS configuration of this process.
public struct MachineInfo: Sendable, Equatable {
    /// `-target-cpu` of the build: `native`, a CPU name (`znver3`…) or `generic`.
    public var targetCPU: String
    /// Vector features the build target enabled, /proc/cpuinfo spelling (`avx2 fma …`).
    public var targetFeatures: [String]
    /// The running CPU's model name (`?` where /proc/cpuinfo is unavailable).
    public var cpuModel: String
    /// The running CPU's vector features among `vectorFlags`, in that order.
    public var cpuFeatures: [String]
    /// `openblas_get_corename()`: the kernel family OpenBLAS picked (e.g. `Haswell`, `Zen`).
    public var blasCore: String
    /// `openblas_get_num_threads()` at the time of the call; nil where it varies by row (the
    /// suite, whose parts run as child processes with their own thread counts).
    public var blasThreads: Int?

    /// The /proc/cpuinfo flags reported, narrowest first.
    public static let vectorFlags = [
        "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
        "avx512_bf16", "asimd", "sve",
    ]

    /// This process's machine (read OpenBLAS after setting its thread count).
    public static func current() -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let parsed = parseCPUInfo(cpuinfo)
        return MachineInfo(
            targetCPU: String(cString: csgd_build_target_cpu()),
            targetFeatures: String(cString: csgd_build_vector_features())
                .split(separator: " ").map(String.init),
            cpuModel: parsed.model, cpuFeatures: parsed.features,
            blasCore: BLASThreads.coreName, blasThreads: BLASThreads.current)
    }

    /// The first processor's model name and its `vectorFlags` (x86 `flags`, Arm `Features`).
    public static func parseCPUInfo(_ text: String) -> (model: String, features: [String]) {
        var model: String?
        var flags: Set<String>?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let key = parts[0].trimmingCharacters(in: .whitespaces)
            let value = parts[1].trimmingCharacters(in: .whitespaces)
            if model == nil && (key == "model name" || key == "Model") { model = value }
            if flags == nil && (key == "flags" || key == "Features") {
                flags = Set(value.split(separator: " ").map(String.init))
            }
            if model != nil && flags != nil { break }
        }
        return (model ?? "?", vectorFlags.filter { flags?.contains($0) ?? false })
    }

    /// Target features the running CPU lacks (a binary built for them would not run here).
    public var missingFeatures: [String] {
        targetFeatures.filter { !cpuFeatures.contains($0) }
    }

    /// One line for the top of a table.
    public var headerLine: String {
        let built = targetFeatures.isEmpty ? "baseline" : targetFeatures.joined(separator: " ")
        let runs = cpuFeatures.isEmpty ? "none listed" : cpuFeatures.joined(separator: " ")
        return "machine: built for \(targetCPU) (\(built)); runs on \(cpuModel) (\(runs)); "
            + "OpenBLAS \(blasCore), "
            + (blasThreads.map { "\($0) thread(s)" } ?? "threads per part")
    }

    /// The `{"name":"machine",…}` JSON line.
    public var jsonLine: String {
        let strings = [
            ("name", "machine"), ("target_cpu", targetCPU),
            ("target_features", targetFeatures.joined(separator: " ")), ("cpu", cpuModel),
            ("cpu_features", cpuFeatures.joined(separator: " ")), ("openblas_core", blasCore),
        ]
        let fields = strings.map { jsonStringLiteral($0.0) + ":" + jsonStringLiteral($0.1) }
        return "{"
            + (fields + ["\"openblas_threads\":" + (blasThreads.map(String.init) ?? "null")])
            .joined(separator: ",") + "}"
    }
}
