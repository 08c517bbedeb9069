// `csgd-dist bench` with no subcommand: the whole suite in one sitting. Each part is a child
// process of this binary (`bench kernels`, `bench train` at 1 and 2 BLAS threads, `bench
// scaling` under mpirun), so every configuration starts from a clean process and its own thread
// setting, and the ratios compare figures measured minutes apart on the same machine.

import ArgumentParser
import CSGDBench
import Foundation

/// Runs every benchmark and prints one table (or JSON lines) with the cross-part ratios.
struct BenchSuiteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "The whole suite: kernels, train step 1×1 / 1×2 threads (kernels split, and "
            + "2 micro-batches on 2 replicas) / 2 ranks×1, C-SGD, "
            + "inference, memory.",
        discussion: """
            The default of `csgd-dist bench`. Parts: kernels (sgemm and the ResNet-56 conv mix), \
            train (1 rank × 1 thread: step img/s and its ratio to sgemm, C-SGD ÷ SGD step, \
            pruned ÷ unpruned inference, peak RSS), train at 2 threads splitting each kernel \
            and at 2 threads running 2 micro-batches on replicas (each: ratio to 1 thread), \
            scaling (2 ranks × 1 thread vs 1 rank, communication fraction, batch-128 \
            peak RSS; needs mpirun, skipped with a note otherwise). Rows keep their part's \
            name as a prefix.
            """)

    @Option(help: "Model of the train and scaling parts.") var model = "resnet56"
    @Option(help: "Images per rank per step.") var batch = 64
    @Option(help: "Timed steps per train measurement (median reported).") var steps = 8
    @Option(help: "mpirun executable for the scaling part.") var mpirun = "mpirun"
    @Flag(help: "Skip the scaling part (no mpirun needed).") var noScaling = false
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if batch < 1 || steps < 1 {
            throw ValidationError("--batch and --steps must be at least 1")
        }
    }

    func run() throws {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        let common = ["--model", model, "--batch", "\(batch)", "--steps", "\(steps)"]
        var rows: [BenchResult] = []
        func part(_ name: String, _ args: [String]) throws -> [BenchResult] {
            if !output.json { FileHandle.standardError.write(Data("bench: \(name)…\n".utf8)) }
            let text = try runCapturing(exe, ["bench"] + args + ["--json"])
            let parsed = text.split(separator: "\n").compactMap {
                BenchResult(jsonLine: String($0))
            }
            if parsed.isEmpty { throw ValidationError("bench \(name) printed no results") }
            return parsed
        }
        let kernels = try part("kernels", ["kernels", "--repeats", "3"])
        // The reference rate and the ResNet-56 mix; per-shape rows are in `bench kernels`.
        rows += kernels.filter { $0.name == "sgemm_1024" || $0.name.hasSuffix("_mix") }
        let one = try part("train 1 rank × 1 thread", ["train", "--threads", "1"] + common)
        rows += one.map { prefixed($0, "1x1_") }
        let two = try part(
            "train 1 rank × 2 threads", ["train", "--threads", "2", "--step-only"] + common)
        // The same 2 threads running the batch as 2 micro-batches on 2 replicas.
        let twoMicro = try part(
            "train 1 rank × 2 threads × 2 micro-batches",
            ["train", "--threads", "2", "--micro-batches", "2", "--step-only"] + common)
        if let s1 = one.first(where: { $0.name.hasPrefix("train_step_") }) {
            for (part, tag) in [(two, "1x2_"), (twoMicro, "1x2mb_")] {
                guard var s2 = part.first(where: { $0.name.hasPrefix("train_step_") }) else {
                    continue
                }
                s2.extra["ratio_to_1thread"] = s2.value / s1.value
                rows.append(prefixed(s2, tag))
            }
        }
        if noScaling {
            rows.append(BenchResult(name: "scaling_skipped", value: .nan, unit: "--no-scaling"))
        } else {
            let scaling = try part("scaling (mpirun)", ["scaling", "--mpirun", mpirun] + common)
            rows += scaling.map { prefixed($0, "2x1_") }
        }
        // The parts set their own OpenBLAS thread counts (row prefixes 1x1_, 1x2_, 1x2mb_, 2x1_).
        var machine = MachineInfo.current()
        machine.blasThreads = nil
        BenchOutput.emit(
            rows, json: output.json,
            title: "bench: \(model), batch \(batch) per rank, median of \(steps) steps per part",
            columns: [
                ("÷sgemm", "ratio_to_sgemm"), ("ms", "step_ms"), ("comm", "comm_fraction"),
                ("÷sgd", "ratio_to_sgd_step"), ("speedup", "speedup"),
                ("÷1 thread", "ratio_to_1thread"), ("÷1 rank", "ratio_to_1rank"),
                ("÷blocking", "ratio_to_blocking"),
            ], machine: machine)
    }

    private func prefixed(_ r: BenchResult, _ p: String) -> BenchResult {
        var r = r
        r.name = p + r.name
        return r
    }
}
