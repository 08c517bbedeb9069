// Whole-step benchmarks behind `csgd-dist bench train`: a ResNet training step (img/s and
// GFLOP/s against the sgemm rate measured in the same run), its split into compute /
// communication / update, the C-SGD step against the plain SGD step, and eval-mode inference
// of the net pruned to 5/8 against the unpruned one. Synthetic inputs: data loading is not
// what is measured. Under mpirun every rank runs the same steps and rank 0 reports.

import CSGDCentripetal
import CSGDConfig
import CSGDCore
import CSGDDistributed
import CSGDKernels
import CSGDModels
import CSGDTraining
import Foundation

/// Training-step benchmarks.
public enum TrainBenchmark {
    /// What to measure.
    public struct Options: Sendable {
        public var model = "resnet56"
        /// Square input side; nil = the model's native size (32 for the CIFAR ResNets, 224 for
        /// the torchvision ones).
        public var imageSize: Int?
        /// Images per rank per step.
        public var batch = 64
        /// Forward/backward passes the rank's batch is split into (`batch` divisible by it);
        /// with threads > 1 they run in parallel on network replicas (StepRunner).
        public var microBatches = 1
        /// Threads per rank (set for the kernels by the caller; the step runner needs it too).
        public var threads = 1
        public var steps = 8
        public var warmup = 2
        public var update = UpdateMode.rank0
        /// How gradients cross the ranks.
        public var allreduce = RunConfig().allreduce
        /// Bucket size of the overlapped allreduce, MiB.
        public var bucketMb = RunConfig().bucketMb
        /// BatchNorm groups: BN statistics pooled over this many consecutive ranks (1 = off).
        public var bnGroupSize = 1
        /// Also time the C-SGD step and pruned inference.
        public var full = true
        public init() {}
    }

    /// Runs the benchmarks on `comm` (rank 0 of 1 without mpirun).
    public static func run(comm: Communicator, options o: Options) throws -> [BenchResult] {
        var rows: [BenchResult] = []
        let sgemmSeconds = KernelBenchmark.sgemmSquareSeconds(size: 1024, repeats: 5)
        let sgemmGflops = 2 * pow(1024.0, 3) / sgemmSeconds / 1e9
        rows.append(
            BenchResult(name: "sgemm_1024", value: sgemmGflops, unit: BenchResult.gflopsUnit))

        let kind = try ResNetKind(name: o.model)
        let imageSize = o.imageSize ?? nativeImageSize(kind)
        // The torchvision nets get ImageNet's 1000-way head, as in the PyTorch peer.
        let classes = nativeImageSize(kind) == 224 ? 1000 : 10
        let arch = try Architecture.standard(
            model: o.model, inputChannels: 3, imageSize: imageSize, numClasses: classes)
        let net = try Network(architecture: arch)
        net.initialize(seed: 1)
        let sgd = SGD(store: net.store, config: SGDConfig(RunConfig()))
        let micro = o.batch / o.microBatches
        let runner = try StepRunner(
            net: net, comm: comm, microBatch: micro, microBatches: o.microBatches,
            update: o.update, allreduce: o.allreduce, bucketMiB: o.bucketMb,
            bnGroup: try comm.makeRankGroup(groupSize: o.bnGroupSize), threads: o.threads)
        var rng = Rng(seed: UInt64(7 + comm.rank))
        let input = FloatBuffer(count: o.batch * net.imageCount)
        for i in 0..<input.count { input[i] = rng.nextGaussian() }
        let labels = (0..<o.batch).map { _ in Int32(rng.nextInt(below: classes)) }
        let fill: (Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Int32>) -> Void = {
            m, img, lab in
            img.update(
                from: input.pointer + m * micro * net.imageCount, count: micro * net.imageCount)
            for i in 0..<micro { lab[i] = labels[m * micro + i] }
        }
        func timeSteps(_ centripetal: CentripetalUpdate?) -> (
            median: Double, split: (Double, Double, Double), cpu: Double
        ) {
            for _ in 0..<o.warmup {
                runner.step(sgd: sgd, centripetal: centripetal, lr: 1e-3, fill: fill)
            }
            comm.barrier()
            runner.resetTimers()
            var times: [Double] = []
            var cpu: [Double] = []
            for _ in 0..<o.steps {
                let t = monotonicSeconds()
                let c = processCPUSeconds()
                runner.step(sgd: sgd, centripetal: centripetal, lr: 1e-3, fill: fill)
                cpu.append(processCPUSeconds() - c)
                times.append(monotonicSeconds() - t)
            }
            let s = runner.seconds
            let n = Double(o.steps)
            // The slowest rank sets the pace; report its times.
            return (
                comm.allreduceMax(KernelBenchmark.medianOf(times)),
                (
                    comm.allreduceMax(s.compute / n), comm.allreduceMax(s.communication / n),
                    comm.allreduceMax(s.update / n)
                ),
                comm.allreduceMax(KernelBenchmark.medianOf(cpu))
            )
        }
        let globalBatch = Double(o.batch * comm.size)
        let flopsPerStep = 3.0 * Double(net.graph.flopsPerImage) * 2 * Double(o.batch)  // per rank
        let sgdStep = timeSteps(nil)
        let modelTag = try rowModelName(model: o.model, imageSize: imageSize)
        let tag =
            "\(modelTag)_b\(o.batch)x\(comm.size)_\(o.update.rawValue)"
            + (o.microBatches > 1 ? "_mb\(o.microBatches)" : "")
            + (o.threads > 1 ? "_t\(o.threads)" : "")
            + (o.bnGroupSize > 1 ? "_bngroup\(o.bnGroupSize)" : "")
        let gflops = flopsPerStep / sgdStep.median / 1e9
        rows.append(
            BenchResult(
                name: "train_step_" + tag, value: globalBatch / sgdStep.median, unit: "img/s",
                extra: [
                    "step_ms": 1e3 * sgdStep.median, "gflops_per_rank": gflops,
                    "cpu_step_ms": 1e3 * sgdStep.cpu,
                    "ratio_to_sgemm": gflops / sgemmGflops,
                    "compute_ms": 1e3 * sgdStep.split.0, "comm_ms": 1e3 * sgdStep.split.1,
                    "update_ms": 1e3 * sgdStep.split.2,
                    "comm_fraction": sgdStep.split.1 / sgdStep.median, "ranks": Double(comm.size),
                    "threads": Double(o.threads), "micro_batches": Double(o.microBatches),
                    "parallel_micro_batches": Double(runner.parallelMicroBatches),
                    "buckets": Double(runner.allreduceBucketCount),
                    "bn_group_size": Double(o.bnGroupSize),
                    "params": Double(net.graph.parameterCount),
                    "macs_per_image": Double(net.graph.flopsPerImage),
                ]))
        guard o.full else {
            rows.append(peakRSS())
            return rows
        }
        let topology = try Topology(graph: net.graph)
        let plan = try Clustering.plan(
            network: net, topology: topology, target: .ratio(5.0 / 8), method: .even, seed: 1)
        let cen = CentripetalUpdate(
            topology: topology, plan: plan, store: net.store, config: CentripetalConfig())
        let csgdStep = timeSteps(cen)
        // Interleave once more so drift on a shared machine does not bias the ratio.
        let sgdAgain = timeSteps(nil)
        let sgdMedian = min(sgdStep.median, sgdAgain.median)
        rows.append(
            BenchResult(
                name: "csgd_step_" + tag, value: globalBatch / csgdStep.median, unit: "img/s",
                extra: [
                    "step_ms": 1e3 * csgdStep.median, "sgd_step_ms": 1e3 * sgdMedian,
                    "ratio_to_sgd_step": csgdStep.median / sgdMedian,
                    "update_ms": 1e3 * csgdStep.split.2,
                ]))
        // Inference: unpruned vs pruned to 5/8 (real widths; weights do not matter for speed).
        let thin = try Pruner.prune(net, topology: topology, plan: plan)
        func inference(_ n: Network) -> Double {
            for _ in 0..<o.warmup {
                n.forward(images: input.pointer, batch: o.batch, training: false)
            }
            var times: [Double] = []
            for _ in 0..<o.steps {
                let t = monotonicSeconds()
                n.forward(images: input.pointer, batch: o.batch, training: false)
                times.append(monotonicSeconds() - t)
            }
            return comm.allreduceMax(KernelBenchmark.medianOf(times))
        }
        let full = inference(net)
        let pruned = inference(thin)
        rows.append(
            BenchResult(
                name: "inference_\(modelTag)_b\(o.batch)", value: Double(o.batch) / full,
                unit: "img/s", extra: ["forward_ms": 1e3 * full]))
        rows.append(
            BenchResult(
                name: "inference_\(modelTag)_pruned58_b\(o.batch)", value: Double(o.batch) / pruned,
                unit: "img/s",
                extra: [
                    "forward_ms": 1e3 * pruned, "speedup": full / pruned,
                    "flops_ratio": Double(net.graph.flopsPerImage)
                        / Double(thin.graph.flopsPerImage),
                ]))
        rows.append(peakRSS())
        return rows
    }

    /// The image side a model is defined for: 224 for torchvision's ResNets, 32 for CIFAR's.
    public static func nativeImageSize(_ kind: ResNetKind) -> Int {
        switch kind {
        case .cifar: return 32
        case .imagenet: return 224
        }
    }

    /// The model part of row names: a CIFAR ResNet at 32×32 keeps its bare name (`resnet56`,
    /// the names the docs quote); anything else carries the size (`resnet50_224`), so rows at
    /// different sizes never share a name. `imageSize` nil = the model's native size.
    /// - Throws: `CSGDError` for an unknown model name.
    public static func rowModelName(model: String, imageSize: Int?) throws -> String {
        let kind = try ResNetKind(name: model)
        let size = imageSize ?? nativeImageSize(kind)
        if case .cifar = kind, size == 32 { return kind.name }
        return "\(kind.name)_\(size)"
    }

    /// Input sides the bench accepts (the architecture's own bounds).
    public static let imageSizes = 8...Architecture.Limits.imageSize

    /// CPU seconds used so far by this process, all threads (the step's CPU time, which
    /// other processes on a shared machine inflate much less than its wall time).
    static func processCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// Peak resident set size of this process (VmHWM), in MiB.
    public static func peakRSS() -> BenchResult {
        var kb = 0.0
        if let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
                kb = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
            }
        }
        return BenchResult(name: "peak_rss", value: kb / 1024, unit: "MiB")
    }
}
