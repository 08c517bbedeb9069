// `csgd-dist bench loader`: ImageNet input-pipeline throughput and how much of a training step
// waits for it. Generated 500×375 JPEGs (ImageNet's typical size) in a temp folder; the train
// transform at 224 (RandomResizedCrop + flip + normalize), with and without DCT-scaled decoding;
// then ResNet-50 steps fed by the prefetching loader, timing how long the trainer blocks in
// `next()` against the whole step.

import CSGDConfig
import CSGDCore
import CSGDData
import CSGDDistributed
import CSGDModels
import CSGDTraining
import Foundation

/// Input-pipeline benchmarks.
public enum LoaderBenchmark {
    /// What to measure.
    public struct Options: Sendable {
        /// Generated images (500 × 375).
        public var images = 96
        /// Output crop side.
        public var size = 224
        /// Largest worker count of the throughput rows (1, 2, … up to this).
        public var maxWorkers = 2
        /// Images per ResNet-50 step in the data-wait measurement.
        public var stepBatch = 4
        /// Timed ResNet-50 steps (after one warm-up step).
        public var steps = 4
        /// Decode threads feeding the ResNet-50 steps.
        public var stepWorkers = 1
        /// Batches decoded ahead during the steps.
        public var prefetch = 2
        /// Creates the defaults.
        public init() {}
    }

    /// Runs the benchmarks in one process; the temp folder is removed afterwards.
    public static func run(options o: Options) throws -> [BenchResult] {
        let root = NSTemporaryDirectory() + "csgd-bench-loader-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        let classes = 4
        try SyntheticImages.writeImageFolder(
            root: root, classes: classes, perClass: (o.images + classes - 1) / classes,
            width: 500, height: 375, seed: 1)
        let dataset = try ImageFolderDataset.open(root)
        var rows: [BenchResult] = []
        let batch = 16
        let order = Array(0..<dataset.count)
        let batches = stride(from: 0, to: order.count - batch + 1, by: batch).map {
            Array(order[$0..<($0 + batch)])
        }

        func throughput(workers: Int, scaled: Bool) throws -> Double {
            var transform = ImageTransform.train(size: o.size)
            transform.scaledDecoding = scaled
            // One untimed pass warms the page cache, then a timed one.
            var best = Double.infinity
            for _ in 0..<2 {
                let loader = ImageBatchLoader(
                    dataset: dataset, transform: transform, batches: batches, seed: 1, epoch: 0,
                    workers: workers, prefetch: 4, policy: .fail)
                let t = monotonicSeconds()
                for _ in batches { _ = try loader.next() }
                best = min(best, monotonicSeconds() - t)
                loader.close()
            }
            return Double(batches.count * batch) / best
        }
        for w in 1...max(1, o.maxWorkers) {
            let ips = try throughput(workers: w, scaled: true)
            rows.append(
                BenchResult(
                    name: "loader_train\(o.size)_\(w)worker", value: ips, unit: "img/s",
                    extra: ["per_worker": ips / Double(w), "ms_per_image": 1e3 * Double(w) / ips]))
        }
        let full = try throughput(workers: 1, scaled: false)
        let scaled = rows[0].value
        rows.append(
            BenchResult(
                name: "loader_train\(o.size)_1worker_full_decode", value: full, unit: "img/s",
                extra: [
                    "per_worker": full, "ms_per_image": 1e3 / full, "scaled_speedup": scaled / full,
                ]))
        rows.append(try dataWait(dataset: dataset, options: o))
        return rows
    }

    /// ResNet-50 training steps at `stepBatch` images fed by the loader: the fraction of the
    /// step time spent blocked waiting for data (after one warm-up step, and including it).
    static func dataWait(dataset: ImageFolderDataset, options o: Options) throws -> BenchResult {
        let arch = try Architecture.standard(
            model: "resnet50", inputChannels: 3, imageSize: o.size,
            numClasses: dataset.classes.count)
        let net = try Network(architecture: arch)
        net.initialize(seed: 1)
        var config = RunConfig()
        config.lr = 1e-3
        let sgd = SGD(store: net.store, config: SGDConfig(config))
        let comm = LocalCommunicator()
        let runner = try StepRunner(
            net: net, comm: comm, microBatch: o.stepBatch, microBatches: 1, update: .rank0)
        let total = o.steps + 1
        let sampler = try Sampler(
            datasetCount: dataset.count, globalBatch: o.stepBatch, rank: 0, worldSize: 1, seed: 1,
            shuffle: true)
        let order = sampler.globalOrder(epoch: 0)
        let batches = (0..<total).map {
            sampler.rankBatch(order: order, step: $0 % sampler.stepsPerEpoch)
        }
        let loader = ImageBatchLoader(
            dataset: dataset, transform: .train(size: o.size), batches: batches, seed: 1,
            epoch: 0, workers: o.stepWorkers, prefetch: o.prefetch, policy: .fail)
        defer { loader.close() }
        let floats = 3 * o.size * o.size
        var stepTimes: [Double] = []
        var waits: [Double] = []
        for _ in 0..<total {
            let t = monotonicSeconds()
            let waitedBefore = loader.waitSeconds
            let b = try loader.next()
            waits.append(loader.waitSeconds - waitedBefore)
            runner.step(sgd: sgd, centripetal: nil, lr: 1e-3) { _, img, lab in
                img.update(from: b.images, count: b.count * floats)
                lab.update(from: b.labels, count: b.count)
            }
            stepTimes.append(monotonicSeconds() - t)
        }
        let steady = waits.dropFirst().reduce(0, +) / stepTimes.dropFirst().reduce(0, +)
        let cold = waits.reduce(0, +) / stepTimes.reduce(0, +)
        return BenchResult(
            name: "data_wait_resnet50_b\(o.stepBatch)", value: 100 * steady, unit: "% of step",
            extra: [
                "step_ms": 1e3 * stepTimes.dropFirst().reduce(0, +) / Double(o.steps),
                "wait_ms": 1e3 * waits.dropFirst().reduce(0, +) / Double(o.steps),
                "with_first_step_pct": 100 * cold, "workers": Double(o.stepWorkers),
            ])
    }
}
