// `csgd-dist bench train` (one process or every rank of an mpirun job) and `bench scaling`
// (an orchestrator that runs `bench train` under mpirun with 1 and 2 ranks, both update modes,
// the overlapped and the blocking gradient allreduce, and a batch-128 process for peak memory,
// then prints the ratios from that same run).

import ArgumentParser
import CSGDBench
import CSGDConfig
import CSGDDistributed
import CSGDKernels
import CSGDTraining
import Foundation

/// `csgd-dist bench train`: training-step throughput, C-SGD overhead, pruned inference.
struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "ResNet training step img/s (vs sgemm), C-SGD vs SGD step, pruned inference.",
        discussion: """
            Synthetic 3×S×S inputs (S = `--image-size`, default the model's own: 32 for the \
            CIFAR ResNets, 224 for resnet18/34/50, which get a 1000-way head like the PyTorch \
            peer), `--batch` images per rank. Row names carry the size when it is not 32 \
            (train_step_resnet50_224_b16x1_rank0). Rows: sgemm_1024 (reference \
            rate, same run); train_step_* (img/s over all ranks; GFLOP/s per rank and its ratio \
            to sgemm; compute / communication / update ms and the communication fraction); \
            csgd_step_* (ratio_to_sgd_step = C-SGD step time ÷ plain SGD step time); inference \
            of the net and of its 5/8-pruned version (speedup); peak_rss. Run it under mpirun \
            for the distributed numbers (rank 0 reports the slowest rank's times).
            """)

    @Option(help: "Model.") var model = "resnet56"
    @Option(help: "Square input side (default: 32 for CIFAR ResNets, 224 for resnet18/34/50).")
    var imageSize: Int?
    @Option(help: "Images per rank per step.") var batch = 64
    @Option(help: "Timed steps (median reported).") var steps = 8
    @Option(help: "Untimed steps before timing.") var warmup = 2
    @Option(help: "Threads per rank (OpenBLAS and our kernels).") var threads = 1
    @Option(
        help: """
            Forward/backward passes per step (--batch divisible by it); with --threads > 1 they \
            run in parallel, one single-threaded network replica each.
            """)
    var microBatches = 1
    @Option(help: "Who updates: rank0 (then broadcasts the weights) or replicated.")
    var update = UpdateMode.rank0
    @Option(help: "Gradient allreduce: overlap (buckets during backward) or blocking.")
    var allreduce = RunConfig().allreduce
    @Option(help: "Bucket size of the overlapped allreduce, MiB.")
    var bucketMb = RunConfig().bucketMb
    @Option(help: "BatchNorm statistics pooled over groups of this many ranks (1 = per rank).")
    var bnGroupSize = 1
    @Flag(help: "Only the SGD step (skip C-SGD and inference rows).") var stepOnly = false
    @Option(
        help: """
            3×3 stride-1 convs: im2col, winograd (F(2×2,3×3)), winograd4 (F(4×4,3×3)) or auto \
            (default: $CSGD_CONV3X3, else auto).
            """)
    var conv3x3: Conv3x3Algorithm?
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if batch < 1 || steps < 1 || threads < 1 || bnGroupSize < 1 {
            throw ValidationError(
                "--batch, --steps, --threads and --bn-group-size must be at least 1")
        }
        if warmup < 0 { throw ValidationError("--warmup must be at least 0 (got \(warmup))") }
        if microBatches < 1 || microBatches > batch || batch % microBatches != 0 {
            throw ValidationError(
                "--micro-batches must divide --batch \(batch) (got \(microBatches))")
        }
        try validateImageSize(imageSize)
        if !(bucketMb > 0 && bucketMb.isFinite) {
            throw ValidationError("--bucket-mb must be > 0 (got \(bucketMb))")
        }
    }

    func run() throws {
        BLASThreads.set(threads)
        KernelThreads.set(threads)
        if let conv3x3 { ConvAlgorithm.conv3x3 = conv3x3 }
        try runJob { comm in
            var o = TrainBenchmark.Options()
            o.model = model
            o.imageSize = imageSize
            o.batch = batch
            o.microBatches = microBatches
            o.threads = threads
            o.steps = steps
            o.warmup = warmup
            o.update = update
            o.allreduce = allreduce
            o.bucketMb = bucketMb
            o.bnGroupSize = bnGroupSize
            o.full = !stepOnly
            let rows = try TrainBenchmark.run(comm: comm, options: o)
            guard comm.isRoot else { return }
            BenchOutput.emit(
                rows, json: output.json,
                title:
                    "bench train: \(model)\(imageSize.map { " @\($0)" } ?? "") batch \(batch)/rank × \(comm.size) rank(s), "
                    + (microBatches > 1 ? "\(microBatches) micro-batches, " : "")
                    + "\(threads) thread(s), update \(update.rawValue), allreduce \(allreduce.rawValue), "
                    + (bnGroupSize > 1 ? "BN groups of \(bnGroupSize) ranks, " : "")
                    + "3×3 convs \(ConvAlgorithm.conv3x3.rawValue), "
                    + "median of \(steps) steps",
                columns: [
                    ("ms", "step_ms"), ("GFLOP/s", "gflops_per_rank"), ("÷sgemm", "ratio_to_sgemm"),
                    ("comm", "comm_fraction"), ("÷sgd", "ratio_to_sgd_step"),
                    ("speedup", "speedup"),
                ])
        }
    }
}

/// `csgd-dist bench scaling`: 2 ranks vs 1 rank, rank0 vs replicated, overlapped vs blocking
/// allreduce, peak memory.
struct BenchScalingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Runs `bench train` under mpirun with 1 and 2 ranks and reports the ratios.",
        discussion: """
            Needs mpirun. Each configuration is a separate job (1 BLAS thread per rank, bound \
            to cores), run back to back in this invocation, so the ratios compare figures \
            measured in the same sitting. The 2-rank rank0 step runs with the overlapped and \
            with the blocking gradient allreduce (row *_2ranks_overlap: comm_fraction is the \
            communication time not hidden behind backward; ratio_to_blocking = img/s ÷ the \
            blocking job's); the other 2-rank rows use the default `allreduce`. Also measures \
            the peak RSS of a batch-128 process.
            """)

    @Option(help: "Model.") var model = "resnet56"
    @Option(help: "Square input side (default: the model's own, see `bench train`).")
    var imageSize: Int?
    @Option(help: "Images per rank per step.") var batch = 64
    @Option(help: "Timed steps per job.") var steps = 8
    @Option(help: "Untimed steps before timing, per job.") var warmup = 2
    @Option(help: "Batch of the peak-memory job (1 rank).") var memoryBatch = 128
    @Option(
        help: """
            3×3 stride-1 convs: im2col, winograd (F(2×2,3×3)), winograd4 (F(4×4,3×3)) or auto \
            (default: $CSGD_CONV3X3, else auto).
            """)
    var conv3x3: Conv3x3Algorithm?
    @Option(help: "mpirun executable.") var mpirun = "mpirun"
    @OptionGroup var output: BenchOutputOptions

    func validate() throws {
        if batch < 1 || steps < 1 || memoryBatch < 1 {
            throw ValidationError("--batch, --steps and --memory-batch must be at least 1")
        }
        if warmup < 0 { throw ValidationError("--warmup must be at least 0 (got \(warmup))") }
        try validateImageSize(imageSize)
    }

    func run() throws {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        func job(
            ranks: Int, update: UpdateMode, batch b: Int, stepOnly: Bool,
            allreduce: AllreduceMode = RunConfig().allreduce
        ) throws -> [String: [String: Any]] {
            var args = ["-n", "\(ranks)", "--bind-to", "core", "-x", "OPENBLAS_NUM_THREADS=1"]
            if getuid() == 0 { args.append("--allow-run-as-root") }
            args += [
                exe, "bench", "train", "--json", "--model", model, "--batch", "\(b)", "--steps",
                "\(steps)", "--warmup", "\(warmup)", "--update", update.rawValue, "--allreduce",
                allreduce.rawValue,
            ]
            if let imageSize { args += ["--image-size", "\(imageSize)"] }
            if let conv3x3 { args += ["--conv3x3", conv3x3.rawValue] }
            if stepOnly { args.append("--step-only") }
            let text = try runCapturing(mpirun, args)
            var rows: [String: [String: Any]] = [:]
            for line in text.split(separator: "\n") where line.hasPrefix("{") {
                if let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8))
                    as? [String: Any],
                    let name = obj["name"] as? String
                {
                    rows[name] = obj
                }
            }
            return rows
        }
        func stepRow(_ rows: [String: [String: Any]]) throws -> [String: Any] {
            guard let r = rows.first(where: { $0.key.hasPrefix("train_step_") })?.value else {
                throw ValidationError("bench train produced no train_step row")
            }
            return r
        }
        let one = try stepRow(try job(ranks: 1, update: .rank0, batch: batch, stepOnly: true))
        let overlapped = try stepRow(
            try job(ranks: 2, update: .rank0, batch: batch, stepOnly: true, allreduce: .overlap))
        let blocking = try stepRow(
            try job(ranks: 2, update: .rank0, batch: batch, stepOnly: true, allreduce: .blocking))
        let two: [String: Any]
        switch RunConfig().allreduce {
        case .overlap: two = overlapped
        case .blocking: two = blocking
        }
        let twoRep = try stepRow(
            try job(ranks: 2, update: .replicated, batch: batch, stepOnly: true))
        let mem = try job(ranks: 1, update: .rank0, batch: memoryBatch, stepOnly: true)["peak_rss"]
        let name = try TrainBenchmark.rowModelName(model: model, imageSize: imageSize)
        func d(_ r: [String: Any], _ k: String) -> Double { (r[k] as? Double) ?? .nan }
        let rows = [
            BenchResult(
                name: "train_\(name)_1rank", value: d(one, "value"), unit: "img/s",
                extra: ["step_ms": d(one, "step_ms")]),
            BenchResult(
                name: "train_\(name)_2ranks_rank0", value: d(two, "value"), unit: "img/s",
                extra: [
                    "step_ms": d(two, "step_ms"),
                    "ratio_to_1rank": d(two, "value") / d(one, "value"),
                    "comm_fraction": d(two, "comm_fraction"), "comm_ms": d(two, "comm_ms"),
                ]),
            BenchResult(
                name: "train_\(name)_2ranks_replicated", value: d(twoRep, "value"), unit: "img/s",
                extra: [
                    "step_ms": d(twoRep, "step_ms"),
                    "ratio_to_1rank": d(twoRep, "value") / d(one, "value"),
                    "comm_fraction": d(twoRep, "comm_fraction"), "comm_ms": d(twoRep, "comm_ms"),
                    "ratio_to_rank0_step": d(twoRep, "step_ms") / d(two, "step_ms"),
                ]),
            BenchResult(
                name: "train_\(name)_2ranks_overlap", value: d(overlapped, "value"),
                unit: "img/s",
                extra: [
                    "step_ms": d(overlapped, "step_ms"),
                    "comm_fraction": d(overlapped, "comm_fraction"),
                    "comm_ms": d(overlapped, "comm_ms"), "buckets": d(overlapped, "buckets"),
                    "blocking_img_s": d(blocking, "value"),
                    "blocking_step_ms": d(blocking, "step_ms"),
                    "blocking_comm_fraction": d(blocking, "comm_fraction"),
                    "blocking_comm_ms": d(blocking, "comm_ms"),
                    "ratio_to_blocking": d(overlapped, "value") / d(blocking, "value"),
                ]),
            BenchResult(
                name: "peak_rss_\(name)_b\(memoryBatch)", value: mem.map { d($0, "value") } ?? .nan,
                unit: "MiB"),
        ]
        BenchOutput.emit(
            rows, json: output.json,
            title: "bench scaling: \(name), batch \(batch) per rank, 1 BLAS thread per rank",
            columns: [
                ("ms", "step_ms"), ("÷1 rank", "ratio_to_1rank"), ("comm", "comm_fraction"),
                ("÷rank0", "ratio_to_rank0_step"), ("÷blocking", "ratio_to_blocking"),
            ])
    }
}

/// `--image-size`, if given, must be a size the architecture accepts (checked again there).
func validateImageSize(_ size: Int?) throws {
    let range = TrainBenchmark.imageSizes
    if let size, !range.contains(size) {
        throw ValidationError(
            "--image-size must be in \(range.lowerBound)...\(range.upperBound) (got \(size))")
    }
}

/// Runs a program, returns its stdout; a non-zero exit is an error naming the command.
func runCapturing(_ program: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [program] + args
    var env = ProcessInfo.processInfo.environment
    env["OPENBLAS_NUM_THREADS"] = "1"
    p.environment = env
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    if p.terminationStatus != 0 {
        throw ValidationError(
            "\(program) \(args.joined(separator: " ")) exited \(p.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self)
}
