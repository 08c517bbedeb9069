// `csgd-dist import`: brings a trained network in — an ONNX file as torch.onnx.export writes
// it, or a torchvision ResNet state_dict — and writes a csgd-dist model file (graph, weights,
// preprocessing) that train/csgd/prune/eval/export read like any other. Needs no MPI and no
// dataset.

import ArgumentParser
import CSGDCore
import CSGDImport
import CSGDModels
import Foundation

/// Translates an ONNX model or torchvision weights into a csgd-dist model file.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import an ONNX model or torchvision ResNet weights as a csgd-dist model file.",
        discussion: """
            ONNX: a model as torch.onnx.export(..., dynamo=False) writes it (opsets \
            \(ONNXImport.supportedOpsets.lowerBound)-\(ONNXImport.supportedOpsets.upperBound)), \
            with ops \(ONNXImport.supportedOps.joined(separator: ", ")); anything else is \
            refused naming the node. Export with do_constant_folding=False to keep the \
            BatchNorm layers (preferred for C-SGD); the default export folds them into conv \
            biases, which import as such (or, with --unfold-bn, as conv + an \
            identity-initialised BatchNorm). torchvision: `--torchvision resnet50 --weights \
            sd.safetensors` (a state_dict saved with safetensors.torch.save_file), ImageNet \
            mean/std recorded unless --mean/--std say otherwise.
            """)

    @Argument(help: ArgumentHelp("ONNX model to import.", valueName: "MODEL.onnx"))
    var onnx: String?

    @Option(
        help: ArgumentHelp(
            "Model file to write (atomically).", valueName: "OUT.safetensors"))
    var output: String

    @Option(help: "Model name recorded in the file (default: the ONNX file's name).")
    var name: String?

    @Option(
        help: ArgumentHelp(
            "Square input side (needed when the ONNX input's H and W are symbolic; default 224 "
                + "for --torchvision).", valueName: "S"))
    var imageSize: Int?

    @Option(
        help: ArgumentHelp(
            "Per-channel mean of pixel/255 the model was trained with, comma-separated.",
            valueName: "a,b,c"))
    var mean: String?

    @Option(
        help: ArgumentHelp(
            "Per-channel std of pixel/255 the model was trained with, comma-separated.",
            valueName: "a,b,c"))
    var std: String?

    @Flag(
        help:
            "Insert an identity-initialised BatchNorm after every biased conv without one (ONNX).")
    var unfoldBn = false

    @Option(
        help: ArgumentHelp(
            "Import torchvision weights of this model: \(TorchvisionImport.models.joined(separator: ", ")).",
            valueName: "MODEL"))
    var torchvision: String?

    @Option(
        help: ArgumentHelp(
            "The torchvision state_dict (safetensors) for --torchvision.",
            valueName: "SD.safetensors"))
    var weights: String?

    @Option(help: "Re-initialise the classifier with this many classes (--torchvision).")
    var numClasses: Int?

    @Option(help: "Seed of the re-initialised classifier.") var seed: UInt64 = 1

    func validate() throws {
        if (onnx == nil) == (torchvision == nil) {
            throw ValidationError("give either an ONNX file or --torchvision MODEL")
        }
        if torchvision != nil && weights == nil {
            throw ValidationError("--torchvision needs --weights SD.safetensors")
        }
        if torchvision == nil && (weights != nil || numClasses != nil) {
            throw ValidationError("--weights and --num-classes apply to --torchvision only")
        }
        if torchvision != nil && unfoldBn {
            throw ValidationError("--unfold-bn applies to ONNX import only")
        }
        if (mean == nil) != (std == nil) {
            throw ValidationError("--mean and --std go together")
        }
    }

    /// Comma-separated floats of `flag`.
    func floats(_ text: String, _ flag: String) throws -> [Float] {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        let values = parts.compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
        if values.count != parts.count || values.isEmpty || values.count > 4 {
            throw CSGDError(
                "--\(flag) '\(text.prefix(80))' is not a comma-separated list of 1 to 4 numbers")
        }
        // A std of 0 divides by zero; |x| > 1e6 is no normalisation of pixel/255.
        if let v = values.first(where: {
            !$0.isFinite || abs($0) > 1e6 || (flag == "std" && $0 <= 0)
        }) {
            throw CSGDError(
                "--\(flag) \(v) is out of range: "
                    + (flag == "std"
                        ? "each std must be in (0, 1e6]" : "each mean must be in [-1e6, 1e6]"))
        }
        return values
    }

    func run() throws {
        do {
            var preprocessing: Preprocessing?
            if let mean, let std {
                preprocessing = Preprocessing(
                    mean: try floats(mean, "mean"), std: try floats(std, "std"))
            }
            let imported: ImportedModel
            let from: String
            if let torchvision, let weights {
                from = weights
                imported = try TorchvisionImport.read(
                    model: torchvision, weights: weights, numClasses: numClasses,
                    imageSize: imageSize ?? 224, preprocessing: preprocessing ?? .imageNet,
                    seed: seed)
            } else {
                from = onnx!
                imported = try ONNXImport.read(
                    path: from,
                    options: ImportOptions(
                        name: name, imageSize: imageSize, preprocessing: preprocessing,
                        unfoldBatchNorm: unfoldBn))
            }
            var imp = imported
            if let name { imp.architecture.model = name }
            try refuseOutputOverInputs(output, flag: "--output", inputs: [from])
            let net = try imp.write(to: output)
            print("imported \(from) as '\(imp.architecture.model)' to \(output)")
            for line in imp.notes + ImportReport.lines(net) { print(line) }
        } catch {
            fail(error, comm: nil)
        }
    }
}
