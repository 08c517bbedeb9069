// The built-in networks by name. Each family writes a GraphSpec with its nominal widths; the
// same spec code then builds every width array (thin, original, widened).

import CSGDCore

/// The built-in model families.
public enum ModelZoo {
    /// Every built-in model name, in `--help` order: the CIFAR-style ResNets the papers use,
    /// then torchvision's (any other 6n+2 depth also parses as a CIFAR-style ResNet).
    public static let names = ResNetKind.builtInNames

    /// Whether `name` is a built-in model (including any CIFAR ResNet-(6n+2) depth).
    public static func isBuiltIn(_ name: String) -> Bool {
        (try? ResNetKind(name: name)) != nil
    }

    /// The spec of built-in `model` with its nominal widths.
    /// - Throws: `CSGDError` for an unknown name.
    public static func spec(model: String, inputChannels: Int, imageSize: Int, numClasses: Int)
        throws -> GraphSpec
    {
        let kind = try ResNetKind(name: model)
        return resNetSpec(kind: kind, numClasses: numClasses)
    }

    /// The canonical spelling of a built-in model name (e.g. `ResNet56` → `resnet56`).
    public static func canonicalName(_ model: String) throws -> String {
        try ResNetKind(name: model).name
    }
}
