// The TensorBoard view of the run's records: each numeric field of a step, epoch or prune record
// becomes one scalar tagged `<group>/<its JSON key>`, at the run's global step. Groups: `train/`
// (step records' training metrics), `csgd/` (step records' deviation), `epoch/` and `prune/`.
// Prune records add two ratios a chart wants, `prune/flops_cut` and `prune/params_cut`
// (1 − after/before). Absent optional fields give no scalar; per-layer widths are left to the
// report.

extension StepRecord {
    /// The record's scalars for TensorBoard (the step itself is the event's step).
    public var scalars: [(tag: String, value: Double)] {
        var s: [(tag: String, value: Double)] = [
            ("train/loss", loss), ("train/top1", top1), ("train/lr", lr),
            ("train/img_per_s", imgPerS), ("train/data_wait_fraction", dataWaitFraction),
            ("train/comm_fraction", commFraction), ("train/elapsed_seconds", elapsedSeconds),
            ("train/epoch", Double(epoch)), ("train/round", Double(round)),
        ]
        if let d = deviationKernels { s.append(("csgd/deviation_kernels", d)) }
        if let d = deviationVectors { s.append(("csgd/deviation_vectors", d)) }
        return s
    }
}

extension EpochRecord {
    /// The record's scalars for TensorBoard, tagged `epoch/<key>`.
    public var scalars: [(tag: String, value: Double)] {
        let fields: [(String, Double?)] = [
            ("epoch", Double(epoch)), ("round", Double(round)), ("train_loss", trainLoss),
            ("train_top1", trainTop1), ("test_loss", testLoss), ("test_top1", testTop1),
            ("test_top5", testTop5), ("lr", lr), ("seconds", seconds), ("img_per_s", imgPerS),
            ("world_size", worldSize.map(Double.init)),
            ("data_wait_seconds", dataWaitSeconds),
            ("skipped_images", skippedImages.map(Double.init)),
            ("deviation_kernels", deviationKernels), ("deviation_vectors", deviationVectors),
        ]
        return fields.compactMap { k, v in v.map { ("epoch/" + k, $0) } }
    }
}

extension PruneRecord {
    /// The record's scalars for TensorBoard, tagged `prune/<key>`, plus `prune/flops_cut` and
    /// `prune/params_cut`.
    public var scalars: [(tag: String, value: Double)] {
        func cut(_ before: Int?, _ after: Int?) -> Double? {
            guard let before, let after, before > 0 else { return nil }
            return 1 - Double(after) / Double(before)
        }
        let fields: [(String, Double?)] = [
            ("round", Double(round)), ("max_logit_diff", maxLogitDiff),
            ("test_top1_before", testTop1Before), ("test_top1_after", testTop1After),
            ("flops_before", flopsBefore.map(Double.init)),
            ("flops_after", flopsAfter.map(Double.init)),
            ("params_before", paramsBefore.map(Double.init)),
            ("params_after", paramsAfter.map(Double.init)),
            ("flops_cut", cut(flopsBefore, flopsAfter)),
            ("params_cut", cut(paramsBefore, paramsAfter)),
        ]
        return fields.compactMap { k, v in v.map { ("prune/" + k, $0) } }
    }
}

extension MetricsRecord {
    /// The record's scalars for TensorBoard.
    public var scalars: [(tag: String, value: Double)] {
        switch self {
        case .epoch(let r): r.scalars
        case .prune(let r): r.scalars
        }
    }
}
