// `csgd-dist bench …`: performance benchmarks. Plain `bench` runs the whole suite (`bench
// all`); each part is also a subcommand (kernels, train, scaling) that produces
// `[BenchResult]` and prints it through `BenchOutput`, so every benchmark shares the same table
// and JSON-lines formats.

import ArgumentParser
import CSGDBench
import CSGDKernels
import CSGDTraining
import Foundation

/// `csgd-dist bench`: groups the benchmark subcommands.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure kernel, training-step, C-SGD, inference and scaling throughput.",
        subcommands: [
            BenchSuiteCommand.self, BenchKernelsCommand.self, BenchTrainCommand.self,
            BenchScalingCommand.self, BenchLoaderCommand.self,
        ],
        defaultSubcommand: BenchSuiteCommand.self
    )
}

/// Output options shared by every `bench` subcommand.
struct BenchOutputOptions: ParsableArguments {
    @Flag(help: "Print one JSON object per result line instead of a table.")
    var json = false
}

/// `csgd-dist bench kernels`: sgemm and conv2d forward+backward GFLOP/s on ResNet-56 shapes.
struct BenchKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "sgemm and conv2d forward+backward GFLOP/s on the ResNet-56 layer shapes.",
        discussion: """
            Rows: sgemm_1024 (square GEMM, the reference rate); per conv shape at batch 64, \
            gemm_<shape> (only the GEMMs that conv makes) and <shape> (conv forward+backward); \
            then aggregates weighted by how often each shape occurs in ResNet-56. `ratio` is \
            GFLOP/s ÷ sgemm_1024; `gemm share` is the fraction of conv time spent in GEMM.
            """
    )

    @Option(help: "Threads (OpenBLAS and our kernels).")
    var threads = 1

    @Option(help: "Timed repetitions per row after one warm-up; the median is reported.")
    var repeats = 5

    @Flag(
        help: """
            Instead: im2col vs Winograd F(2×2,3×3) vs F(4×4,3×3) fwd+bwd per 3×3 stride-1 \
            shape of ResNet-56 (full and 5/8-pruned widths, batch 64) and ResNet-50@224 (batch \
            16); value = im2col time ÷ the faster Winograd's time (the table behind \
            `CSGD_CONV3X3=auto`).
            """)
    var winograd = false

    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if threads < 1 { throw ValidationError("--threads must be at least 1 (got \(threads))") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1 (got \(repeats))") }
    }

    func run() throws {
        if winograd {
            let rows = KernelBenchmark.winogradCalibration(threads: threads, repeats: repeats)
            BenchOutput.emit(
                rows, json: output.json,
                title: "bench kernels --winograd: threads=\(threads) repeats=\(repeats) (median)",
                columns: [
                    ("F(2)", "f2_speedup"), ("F(4)", "f4_speedup"), ("F(2) fwd", "f2_fwd_speedup"),
                    ("F(4) fwd", "f4_fwd_speedup"), ("F(2) bwd", "f2_bwd_speedup"),
                    ("F(4) bwd", "f4_bwd_speedup"), ("im2col ms", "im2col_ms"),
                    ("F(2) ms", "f2_ms"), ("F(4) ms", "f4_ms"), ("im2col GFLOP/s", "im2col_gflops"),
                ])
            return
        }
        let rows = KernelBenchmark.run(threads: threads, repeats: repeats)
        BenchOutput.emit(
            rows, json: output.json,
            title: "bench kernels: threads=\(threads) repeats=\(repeats) (median)",
            columns: [
                ("ratio", "ratio_to_sgemm"), ("gemm share", "ratio_to_gemm_shapes"),
                ("ms", "median_ms"),
            ])
    }
}

/// `csgd-dist bench loader`: JPEG loader img/s per worker and ResNet-50 data-wait fraction.
struct BenchLoaderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loader",
        abstract: "ImageNet loader img/s per worker thread and the data wait of ResNet-50 steps.",
        discussion: """
            Generates 500×375 JPEGs in a temp folder. Rows: loader_train<size>_<n>worker \
            (train transform: RandomResizedCrop + flip + normalize, img/s over n decode threads \
            and per thread), the same with full-size decoding (no DCT scaling) for comparison, \
            and data_wait_resnet50_b<batch>: the share of a ResNet-50 training step spent \
            blocked on the prefetch queue (after one warm-up step; `with first` includes it).
            """)

    @Option(help: "Generated images.") var images = 96
    @Option(help: "Crop side.") var size = 224
    @Option(help: "Largest decode-thread count of the throughput rows.") var maxWorkers = 2
    @Option(help: "Images per ResNet-50 step.") var stepBatch = 4
    @Option(help: "Timed ResNet-50 steps.") var steps = 4
    @Option(help: "Decode threads feeding the steps.") var stepWorkers = 1
    @Option(help: "Threads (OpenBLAS and our kernels).") var threads = 1
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if images < 16 || size < 8 || maxWorkers < 1 || stepBatch < 1 || steps < 1
            || stepWorkers < 1 || threads < 1
        {
            throw ValidationError(
                "--images must be at least 16, --size at least 8, the other counts at least 1")
        }
        if stepBatch > images {
            throw ValidationError("--step-batch (\(stepBatch)) exceeds --images (\(images))")
        }
    }

    func run() throws {
        BLASThreads.set(threads)
        KernelThreads.set(threads)
        var o = LoaderBenchmark.Options()
        o.images = images
        o.size = size
        o.maxWorkers = maxWorkers
        o.stepBatch = stepBatch
        o.steps = steps
        o.stepWorkers = stepWorkers
        let rows: [BenchResult]
        do {
            rows = try LoaderBenchmark.run(options: o)
        } catch {
            fail(error, comm: nil)
        }
        BenchOutput.emit(
            rows, json: output.json,
            title: "bench loader: \(images) generated 500×375 JPEGs, train transform at \(size), "
                + "\(threads) BLAS thread(s)",
            columns: [
                ("per worker", "per_worker"), ("ms/img", "ms_per_image"),
                ("scaled ×", "scaled_speedup"), ("step ms", "step_ms"), ("wait ms", "wait_ms"),
                ("with first %", "with_first_step_pct"),
            ])
    }
}

/// Prints benchmark results as a table or as JSON lines.
enum BenchOutput {
    /// Writes `rows` to stdout: JSON lines when `json`, else a titled table with name, value,
    /// unit and one column per `(header, extra key)` (blank where a row lacks the key). Either
    /// way `machine` comes first (the `machine:` line or the `{"name":"machine",…}` line), so
    /// every figure says which build, CPU and OpenBLAS kernels produced it.
    static func emit(
        _ rows: [BenchResult], json: Bool, title: String, columns: [(String, String)],
        machine: MachineInfo = .current()
    ) {
        if json {
            print(machine.jsonLine)
            for row in rows { print(row.jsonLine) }
        } else {
            print(machine.headerLine)
            print(table(rows, title: title, columns: columns), terminator: "")
        }
    }

    /// The human-readable table.
    static func table(_ rows: [BenchResult], title: String, columns: [(String, String)])
        -> String
    {
        var cells: [[String]] = [["name", "value", "unit"] + columns.map(\.0)]
        for row in rows {
            var line = [row.name, format(row.value), row.unit]
            for (_, key) in columns { line.append(row.extra[key].map(format) ?? "") }
            cells.append(line)
        }
        let widths = (0..<cells[0].count).map { col in cells.map { $0[col].count }.max()! }
        var out = title + "\n"
        for (i, line) in cells.enumerated() {
            var text = ""
            for (col, cell) in line.enumerated() {
                let padding = String(repeating: " ", count: widths[col] - cell.count)
                // Name left-aligned, numbers right-aligned.
                text += col == 0 ? cell + padding : "  " + padding + cell
            }
            out += text + "\n"
            if i == 0 { out += String(repeating: "-", count: text.count) + "\n" }
        }
        return out
    }

    /// Three significant-ish decimals: 87.3, 0.642, 1234.
    static func format(_ x: Double) -> String {
        if !x.isFinite { return "nan" }
        let digits = abs(x) >= 100 ? 1 : abs(x) >= 10 ? 2 : 3
        return String(format: "%.\(digits)f", x)
    }
}

extension Conv3x3Algorithm: ExpressibleByArgument {}
