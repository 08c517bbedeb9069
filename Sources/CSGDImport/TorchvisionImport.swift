// torchvision import: a ResNet-18/34/50 `state_dict` saved with `safetensors.torch.save_file`,
// mapped onto the built-in graph of the same name. Our module names already follow
// torchvision's (`layer1.0.conv1`, `layer1.0.downsample.0`, `fc`), so the mapping is by name;
// every tensor's shape is checked, `num_batches_tracked` is ignored, and anything missing or
// left over is refused in one line naming it.

import CSGDCore
import CSGDModels
import Foundation

/// Reads torchvision ResNet weights.
public enum TorchvisionImport {
    /// The torchvision models that map onto built-in graphs.
    public static let models = ["resnet18", "resnet34", "resnet50"]

    /// Imports the state_dict at `weights` as torchvision `model`.
    /// - Parameters:
    ///   - numClasses: re-initialise `fc` with this many outputs (nn.Linear's default init,
    ///     deterministic in `seed`) instead of loading it; nil keeps the file's classifier.
    ///   - imageSize: square input side the model is built for (224 for ImageNet).
    ///   - preprocessing: recorded in the model file (default: ImageNet's mean/std).
    /// - Throws: a one-line `CSGDError` naming the file and the tensor at fault.
    public static func read(
        model: String, weights path: String, numClasses: Int? = nil, imageSize: Int = 224,
        preprocessing: Preprocessing? = .imageNet, seed: UInt64 = 1
    ) throws -> ImportedModel {
        let name = model.lowercased()
        if !models.contains(name) {
            throw CSGDError(
                "--torchvision \(model) is not supported (use \(models.joined(separator: ", ")))")
        }
        let bytes = try readWholeFile(path, limit: 8 * Architecture.Limits.parameters)
        let file = try SafeTensorsFile(serialized: Data(bytes), source: path)
        let classes: Int
        if let numClasses {
            classes = numClasses
        } else {
            guard let s = file.shape("fc.weight"), s.count == 2 else {
                throw CSGDError(
                    "\(path): no 2-D fc.weight (is this a torchvision \(name) state_dict?)")
            }
            classes = s[0]
        }
        if !(1...Architecture.Limits.numClasses).contains(classes) {
            throw CSGDError(
                "\(path): \(classes) classes are out of 1...\(Architecture.Limits.numClasses)")
        }
        var arch = try Architecture.standard(
            model: name, inputChannels: 3, imageSize: imageSize, numClasses: classes)
        arch.preprocessing = preprocessing
        try arch.validate()
        let net = try Network(architecture: arch)
        net.initialize(seed: seed)
        let store = net.store
        let reinit: Set<String> = numClasses != nil ? ["fc.weight", "fc.bias"] : []
        var needed: [(String, [Int], UnsafeMutablePointer<Float>)] = []
        for (i, s) in store.specs.enumerated() {
            needed.append((s.name, s.shape, store.value(ParameterID(i))))
        }
        for (i, s) in store.bufferSpecs.enumerated() {
            needed.append((s.name, s.shape, store.buffer(BufferID(i))))
        }
        let neededNames = Set(needed.map(\.0))
        let missing = needed.map(\.0).filter { file.shape($0) == nil && !reinit.contains($0) }
        let extra = file.names.filter {
            !neededNames.contains($0) && !$0.hasSuffix(".num_batches_tracked")
        }
        if !missing.isEmpty || !extra.isEmpty {
            func list(_ xs: [String]) -> String {
                xs.prefix(5).joined(separator: ", ") + (xs.count > 5 ? ", … (\(xs.count))" : "")
            }
            var parts: [String] = []
            if !missing.isEmpty { parts.append("missing \(list(missing))") }
            if !extra.isEmpty { parts.append("not in torchvision \(name): \(list(extra))") }
            throw CSGDError("\(path): \(parts.joined(separator: "; "))")
        }
        var tensors: [String: [Float]] = [:]
        for (n, shape, p) in needed {
            let count = shape.reduce(1, *)
            if !reinit.contains(n) {
                let s = file.shape(n)!
                if s != shape {
                    throw CSGDError(
                        "\(path): \(n) has shape \(s), torchvision \(name) with \(classes) "
                            + "classes needs \(shape)")
                }
                if file.dtype(n) != .f32 {
                    throw CSGDError(
                        "\(path): \(n) is \(file.dtype(n)!.rawValue); csgd-dist imports F32 "
                            + "weights (save the model with .float())")
                }
                try file.copyFloats(n, into: UnsafeMutableBufferPointer(start: p, count: count))
            }
            let v = Array(UnsafeBufferPointer(start: p, count: count))
            if let bad = v.firstIndex(where: { !$0.isFinite }) {
                throw CSGDError("\(path): \(n)[\(bad)] is \(v[bad])")
            }
            // A running variance is a mean of variances: a negative one is a damaged file,
            // whose BatchNorm would divide by the root of (var + eps) ≤ 0 or nearly so.
            if n.hasSuffix(".running_var"), let bad = v.firstIndex(where: { $0 < 0 }) {
                throw CSGDError(
                    "\(path): \(n)[\(bad)] is \(v[bad]); a BatchNorm running variance cannot be "
                        + "negative")
            }
            tensors[n] = v
        }
        var notes: [String] = []
        if numClasses != nil {
            notes.append(
                "fc re-initialised for \(classes) classes (nn.Linear's default, seed \(seed))")
        }
        return ImportedModel(architecture: arch, tensors: tensors, notes: notes)
    }
}
