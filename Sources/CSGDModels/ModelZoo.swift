// The built-in networks by name. Each family writes a GraphSpec with its nominal widths; the
// same spec code then builds every width array (thin, original, widened).

import CSGDCore

/// The built-in model families.
public enum ModelZoo {
    /// Every built-in model name, in `--help` order: the CIFAR-style ResNets the papers use,
    /// torchvision's ResNets, then VGG-16-BN, MobileNetV2 and DenseNet-40 (growth rate 12 and
    /// 24). Any other CIFAR ResNet depth 6n+2 and any `densenet<3n+4>-k<growth>` also parse.
    public static let names =
        ResNetKind.builtInNames + ["vgg16", "mobilenetv2", "densenet40", "densenet40-k24"]

    /// A parsed built-in model name.
    private enum Family {
        case resNet(ResNetKind)
        case vgg16
        case mobileNetV2
        case denseNet(DenseNetKind)

        init(name: String) throws {
            switch name.lowercased() {
            case "vgg16": self = .vgg16
            case "mobilenetv2": self = .mobileNetV2
            default:
                if let d = try DenseNetKind(name: name) {
                    self = .denseNet(d)
                    return
                }
                guard name.lowercased().hasPrefix("resnet") else {
                    throw CSGDError(
                        "unknown model '\(name)'",
                        hint: "use one of " + ModelZoo.names.joined(separator: ", "))
                }
                self = .resNet(try ResNetKind(name: name))
            }
        }

        var name: String {
            switch self {
            case .resNet(let k): return k.name
            case .vgg16: return "vgg16"
            case .mobileNetV2: return "mobilenetv2"
            case .denseNet(let d): return d.name
            }
        }
    }

    /// Whether `name` is a built-in model (including any CIFAR ResNet-(6n+2) depth and any
    /// DenseNet depth and growth rate).
    public static func isBuiltIn(_ name: String) -> Bool {
        (try? Family(name: name)) != nil
    }

    /// The spec of built-in `model` with its nominal widths.
    /// - Throws: `CSGDError` for an unknown name.
    public static func spec(model: String, inputChannels: Int, imageSize: Int, numClasses: Int)
        throws -> GraphSpec
    {
        switch try Family(name: model) {
        case .resNet(let kind): return resNetSpec(kind: kind, numClasses: numClasses)
        case .vgg16: return vgg16Spec(imageSize: imageSize, numClasses: numClasses)
        case .mobileNetV2: return mobileNetV2Spec(imageSize: imageSize, numClasses: numClasses)
        case .denseNet(let kind): return denseNetSpec(kind: kind, numClasses: numClasses)
        }
    }

    /// The canonical spelling of a built-in model name (e.g. `ResNet56` → `resnet56`).
    public static func canonicalName(_ model: String) throws -> String {
        try Family(name: model).name
    }
}
