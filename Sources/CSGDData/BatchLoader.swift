// Batches in order, ready before the trainer asks for them.
//
// `BatchStream` is what the trainer consumes: `next()` hands out the next batch of a fixed list
// (e.g. this rank's batches for the rest of an epoch). `InMemoryBatchStream` fills it on the
// spot from an `ImageDataset` (cheap: bytes → floats). `ImageBatchLoader` decodes JPEGs on a
// pool of worker threads into a ring of `prefetch` batch buffers: workers take samples in
// order, never more than `prefetch` batches ahead of the consumer, and each sample's pixels
// depend only on (seed, epoch, sample index) — so the batches are bitwise the same with 1 or
// 16 workers, and the trainer only waits when decoding is slower than compute.

import CSGDCore
import Foundation

/// One batch handed out by a `BatchStream`, valid until the stream's next `next()` or `close()`.
public struct BatchView {
    /// `count · imageFloats` floats, NCHW, normalized.
    public let images: UnsafePointer<Float>
    /// `count` labels.
    public let labels: UnsafePointer<Int32>
    /// Images in the batch.
    public let count: Int
}

/// A fixed sequence of batches, handed out in order.
public protocol BatchStream: AnyObject {
    /// Blocks until the next batch is ready; the previous view becomes invalid.
    /// - Throws: `CSGDError` naming the file if an image of this batch could not be read
    ///   (with `BadImagePolicy.fail`), or if the sequence is exhausted.
    func next() throws -> BatchView
    /// Seconds `next()` spent blocked waiting for data.
    var waitSeconds: Double { get }
    /// Locations of images that could not be decoded and were replaced (`BadImagePolicy.skip`).
    var skippedImages: [String] { get }
    /// Stops any background work; the stream cannot be used afterwards.
    func close()
}

/// What to do with an image file that cannot be read or decoded.
public enum BadImagePolicy: String, Sendable, CaseIterable {
    /// Stop with an error naming the file.
    case fail
    /// Use the next readable image of the dataset in its place (deterministic), and count it.
    case skip
}

/// Batches assembled synchronously from an in-memory dataset with `makeBatch`.
public final class InMemoryBatchStream: BatchStream {
    let dataset: ImageDataset
    let batches: [[Int]]
    let augmentation: Augmentation
    let seed: UInt64
    let epoch: Int
    var position = 0
    let images: UnsafeMutablePointer<Float>
    let labels: UnsafeMutablePointer<Int32>

    /// Hands out `batches` (sample indices) of `dataset`, augmented per `makeBatch`.
    public init(
        dataset: ImageDataset, batches: [[Int]], augmentation: Augmentation, seed: UInt64,
        epoch: Int
    ) {
        self.dataset = dataset
        self.batches = batches
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = epoch
        let most = batches.map(\.count).max() ?? 0
        images = .allocate(capacity: max(1, most * dataset.imageSize))
        labels = .allocate(capacity: max(1, most))
    }

    deinit {
        images.deallocate()
        labels.deallocate()
    }

    public func next() throws -> BatchView {
        if position >= batches.count { throw CSGDError("batch stream exhausted") }
        let b = batches[position]
        position += 1
        makeBatch(
            dataset: dataset, indices: b, augmentation: augmentation, seed: seed, epoch: epoch,
            images: images, labels: labels)
        return BatchView(images: images, labels: labels, count: b.count)
    }

    public var waitSeconds: Double { 0 }
    public var skippedImages: [String] { [] }
    public func close() {}
}

/// Decodes and transforms JPEG batches on worker threads, `prefetch` batches ahead.
///
/// Call `close()` when done with a stream that was not consumed to the end: the worker
/// threads keep the loader alive until they have claimed every sample or are stopped.
public final class ImageBatchLoader: BatchStream, @unchecked Sendable {
    /// The images.
    public let dataset: ImageFolderDataset
    /// Train or eval transform.
    public let transform: ImageTransform
    let batches: [[Int]]
    let seed: UInt64
    let epoch: Int
    let policy: BadImagePolicy
    let slots: Int
    let slotImages: [UnsafeMutablePointer<Float>]
    let slotLabels: [UnsafeMutablePointer<Int32>]

    // Shared state, guarded by `cond`.
    private let cond = NSCondition()
    private var claimBatch = 0  // next sample to hand to a worker: batch …
    private var claimPos = 0  // … and position in it
    private var released = 0  // batches the consumer is done with
    private var remaining: [Int]  // per slot: samples still being decoded
    private var errors: [Int: CSGDError] = [:]  // first error per batch
    private var skipped: [String] = []
    private var stopped = false
    private var running = 0
    private var handedOut = false  // whether batch `released` is out with the consumer
    private var wait = 0.0

    /// Starts `workers` threads decoding `batches` (sample indices) of `dataset` for `epoch`.
    public init(
        dataset: ImageFolderDataset, transform: ImageTransform, batches: [[Int]], seed: UInt64,
        epoch: Int, workers: Int, prefetch: Int, policy: BadImagePolicy
    ) {
        self.dataset = dataset
        self.transform = transform
        self.batches = batches
        self.seed = seed
        self.epoch = epoch
        self.policy = policy
        slots = max(1, prefetch)
        let most = max(1, batches.map(\.count).max() ?? 0)
        slotImages = (0..<slots).map { _ in .allocate(capacity: most * transform.imageFloats) }
        slotLabels = (0..<slots).map { _ in .allocate(capacity: most) }
        remaining = (0..<slots).map { $0 < batches.count ? batches[$0].count : 0 }
        running = max(1, workers)
        for w in 0..<running {
            let t = Thread { [self] in work() }
            t.name = "csgd-loader-\(w)"
            t.start()
        }
    }

    deinit {
        close()
        for p in slotImages { p.deallocate() }
        for p in slotLabels { p.deallocate() }
    }

    public var waitSeconds: Double {
        cond.lock()
        defer { cond.unlock() }
        return wait
    }

    public var skippedImages: [String] {
        cond.lock()
        defer { cond.unlock() }
        return skipped
    }

    public func next() throws -> BatchView {
        let t0 = loaderClock()
        cond.lock()
        defer { cond.unlock() }
        if handedOut {
            // The consumer is done with the previous batch: its slot may be refilled.
            handedOut = false
            released += 1
            let b = released + slots - 1
            if b < batches.count { remaining[b % slots] = batches[b].count }
            cond.broadcast()
        }
        let b = released
        if b >= batches.count || stopped { throw CSGDError("batch stream exhausted") }
        while remaining[b % slots] > 0 && errors[b] == nil { cond.wait() }
        wait += loaderClock() - t0
        if let e = errors[b] { throw e }
        handedOut = true
        let s = b % slots
        return BatchView(images: slotImages[s], labels: slotLabels[s], count: batches[b].count)
    }

    public func close() {
        cond.lock()
        stopped = true
        cond.broadcast()
        while running > 0 { cond.wait() }
        cond.unlock()
    }

    /// Worker loop: claim the next sample within the prefetch window, decode it into its slot.
    private func work() {
        let codec = JPEGCodec()
        cond.lock()
        while true {
            while !stopped && claimBatch < batches.count && claimBatch >= released + slots {
                cond.wait()
            }
            if stopped || claimBatch >= batches.count { break }
            let b = claimBatch
            let p = claimPos
            claimPos += 1
            if claimPos == batches[b].count {
                claimBatch += 1
                claimPos = 0
            }
            cond.unlock()
            let s = b % slots
            let result = produce(
                index: batches[b][p], codec: codec,
                output: slotImages[s] + p * transform.imageFloats)
            cond.lock()
            switch result {
            case .success(let (label, replaced)):
                slotLabels[s][p] = label
                skipped += replaced
            case .failure(let e):
                if errors[b] == nil { errors[b] = e }
            }
            remaining[s] -= 1
            if remaining[s] == 0 || errors[b] != nil { cond.broadcast() }
        }
        running -= 1
        cond.broadcast()
        cond.unlock()
    }

    /// Decodes sample `index` (or, under `.skip`, the first readable one after it) into
    /// `output`; returns its label and the locations of the unreadable images passed over.
    func produce(index: Int, codec: JPEGCodec, output: UnsafeMutablePointer<Float>)
        -> Result<(Int32, [String]), CSGDError>
    {
        var replaced: [String] = []
        let attempts = policy == .skip ? min(dataset.count, 64) : 1
        for k in 0..<attempts {
            let i = (index + k) % dataset.count
            do {
                try loadSample(i, codec: codec, output: output)
                return .success((dataset.records[i].label, replaced))
            } catch {
                let reason =
                    (error as? CSGDError)?.message ?? (error as? JPEGError)?.message ?? "\(error)"
                if policy == .fail {
                    return .failure(
                        CSGDError(
                            "cannot decode image \(dataset.location(i)): \(reason)",
                            hint: "fix or remove the file, or set bad_images: skip to replace "
                                + "unreadable images and count them"))
                }
                replaced.append(dataset.location(i))
            }
        }
        return .failure(
            CSGDError("\(attempts) consecutive unreadable images from \(dataset.location(index))"))
    }

    /// Reads and transforms one image with this loader's seed and epoch.
    func loadSample(_ i: Int, codec: JPEGCodec, output: UnsafeMutablePointer<Float>) throws {
        let bytes = try dataset.bytes(i)
        try bytes.withUnsafeBytes { raw in
            try transform.apply(
                jpeg: raw, codec: codec, seed: seed, epoch: epoch, index: i, output: output)
        }
    }
}

/// Seconds on a monotonic clock.
private func loaderClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
