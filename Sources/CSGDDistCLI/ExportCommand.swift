// `csgd-dist export`: writes a model file (pruned or not) as ONNX, so it runs in onnxruntime,
// TensorRT, OpenVINO, … without csgd-dist. Needs no MPI and no dataset.

import ArgumentParser
import CSGDCore
import CSGDExport
import CSGDRunFiles
import Foundation

/// Loads a model or checkpoint file and writes it as an ONNX model, atomically.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a model file (pruned or not) to ONNX.",
        discussion: """
            The widths are read from the file, so a pruned model exports as its thin self. \
            The ONNX graph takes `input`, float [N, C, H, W] normalised as for training \
            (Fashion-MNIST: x/255, minus 0.2860, over 0.3530, zero-padded 28->32 with the \
            normalised zero), and returns `logits` [N, classes]. BatchNorm is kept as \
            BatchNormalization nodes (eval mode, running statistics), not folded into the \
            convs: the file maps one to one onto the checkpoint's tensors and names, and \
            runtimes fold BN themselves when they load a model. Training checkpoints work \
            too; their optimizer state is left out.
            """)

    @Option(
        help: ArgumentHelp(
            "ONNX file to write (atomically: temp file, then rename).", valueName: "OUT.onnx"))
    var onnx: String

    @Option(
        help: ArgumentHelp("Model or checkpoint file to export.", valueName: "MODEL.safetensors"))
    var input: String

    @Option(
        help:
            "ONNX opset to declare (\(ONNXExport.supportedOpsets.lowerBound)-\(ONNXExport.supportedOpsets.upperBound); default \(ONNXExport.defaultOpset), or the lowest that writes every op of the model, e.g. 17 for LayerNorm)."
    )
    var opset: Int?

    func validate() throws {
        if let opset, !ONNXExport.supportedOpsets.contains(opset) {
            throw ValidationError(
                "--opset \(opset) is not supported (use \(ONNXExport.supportedOpsets.lowerBound)"
                    + "-\(ONNXExport.supportedOpsets.upperBound))")
        }
    }

    func run() throws {
        do {
            try refuseOutputOverInputs(onnx, flag: "--onnx", inputs: [input])
            let net = try Checkpoint.load(path: input).network
            let opset = self.opset ?? ONNXExport.defaultOpset(for: net)
            let bytes = try ONNXExport.serialize(
                net, opset: opset,
                docString: "\(net.architecture.model) exported by csgd-dist from "
                    + URL(fileURLWithPath: input).lastPathComponent)
            try write(bytes)
            let widths = Set(net.architecture.widths).sorted().map(String.init)
            print(
                "exported \(input) (\(net.architecture.model), widths "
                    + "\(widths.joined(separator: "/")), \(net.graph.parameterCount) params) "
                    + "to \(onnx): opset \(opset), \(bytes.count) bytes")
        } catch {
            fail(error, comm: nil)
        }
    }

    /// `writeFileAtomically`, with any error (e.g. a parent that is a file) naming the output.
    private func write(_ bytes: Data) throws {
        do {
            try writeFileAtomically(bytes, to: onnx)
        } catch let e as CSGDError {
            throw e
        } catch {
            throw CSGDError("cannot write \(onnx): \(error.localizedDescription)")
        }
    }
}
