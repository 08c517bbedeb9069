// `csgd-dist sensitivity MODEL`: how much each channel group's loss and accuracy suffer when
// it is merged to narrower widths (cluster means, no training) — the table a budget is
// allocated from (docs/budget.md).

import ArgumentParser
import CSGDConfig
import CSGDTraining

struct SensitivityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensitivity",
        abstract:
            "Per-group table: width → Δloss, Δtop-1, FLOPs (cluster-mean merge, no training).",
        discussion: """
            Each group not fixed by exclude / layer_widths is clustered (cluster_method, seed) \
            to 1/steps … (steps−1)/steps of its width, merged to its cluster means, and \
            evaluated on the first sensitivity_images training images (un-augmented); \
            sensitivity_context says whether the other groups stay unmerged (alone, \
            recalibrated: BN statistics recomputed after the merge) or sit at the uniform \
            widths of the budget (uniform). With --target-flops / --target-params the widths \
            the budget would get are printed too. Example: csgd-dist sensitivity \
            runs/fmnist-r20-base/model.safetensors --config \
            cluster-configs/fashion-mnist-resnet20-csgd.yaml --sensitivity-images 1024 --json
            """)
    @OptionGroup var options: ConfigOptions
    @Argument(help: "Model or checkpoint file.") var model: String
    @Flag(help: "Print the table as JSON instead of text.") var json = false

    func run() throws {
        let c = try resolveOrExit(options)
        try runJob(c) {
            try Pipelines.sensitivity(comm: $0, config: c, input: model, json: json)
        }
    }
}
