// The parameter store, in the llm.c manner: one contiguous Float block each for values,
// gradients and momentum, all with the same layout, plus a separate block for buffers
// (BatchNorm running mean/var) that are never treated as gradients.
//
// Every tensor is a named, typed view (offset + shape + role) into those blocks. Conv weights
// are laid out [K, C, R, S] (PyTorch OIHW) so each filter is one contiguous row of C·R·S floats:
// Centripetal SGD clusters rows and pruning deletes rows. Collectives, the SGD step and
// checkpointing are each one call over one block.

/// What a trainable tensor is; drives weight decay, learning-rate groups and C-SGD handling.
public enum ParameterRole: String, Codable, Sendable, CaseIterable {
    /// Convolution kernel, `[K, C, R, S]`.
    case convWeight
    /// Convolution bias, `[K]`.
    case convBias
    /// BatchNorm scale γ (`bn.weight`), `[C]`.
    case bnScale
    /// BatchNorm shift β (`bn.bias`), `[C]`.
    case bnShift
    /// Fully-connected weight, `[out, in]`.
    case fcWeight
    /// Fully-connected bias, `[out]`.
    case fcBias

    /// Whether optimizers treat this tensor as a "bias" (PyTorch-style name contains "bias").
    public var isBiasLike: Bool { self == .convBias || self == .bnShift || self == .fcBias }
    /// Whether the tensor is a per-channel vector (bias, BN scale/shift) rather than a kernel.
    public var isVector: Bool { self != .convWeight && self != .fcWeight }
}

/// What a non-trainable buffer is.
public enum BufferRole: String, Codable, Sendable {
    /// BatchNorm running mean, `[C]`.
    case bnRunningMean
    /// BatchNorm running variance (unbiased, as PyTorch keeps it), `[C]`.
    case bnRunningVar
}

/// Index of a parameter tensor in its store.
public struct ParameterID: Hashable, Codable, Sendable {
    /// Position in `ParameterStore.specs`.
    public let index: Int
    /// Wraps an index.
    public init(_ index: Int) { self.index = index }
}

/// Index of a buffer tensor in its store.
public struct BufferID: Hashable, Codable, Sendable {
    /// Position in `ParameterStore.bufferSpecs`.
    public let index: Int
    /// Wraps an index.
    public init(_ index: Int) { self.index = index }
}

/// Layout of one tensor inside a block.
public struct TensorSpec<Role: Codable & Sendable>: Codable, Sendable {
    /// torchvision-style name, e.g. `layer1.0.conv1.weight`.
    public let name: String
    /// Shape, outermost first.
    public let shape: [Int]
    /// First element's index in the block.
    public let offset: Int
    /// What the tensor is.
    public let role: Role
    /// Number of elements (product of `shape`).
    public var count: Int { shape.reduce(1, *) }
    /// Length of one row (all dims but the first); a conv filter's C·R·S.
    public var rowLength: Int { shape.dropFirst().reduce(1, *) }
}

/// Layout of a trainable tensor.
public typealias ParameterSpec = TensorSpec<ParameterRole>
/// Layout of a buffer tensor.
public typealias BufferSpec = TensorSpec<BufferRole>

/// Collects tensor declarations, then allocates the blocks in one go.
public struct ParameterStoreBuilder {
    public private(set) var specs: [ParameterSpec] = []
    public private(set) var bufferSpecs: [BufferSpec] = []
    private var parameterCount = 0
    private var bufferCount = 0

    /// An empty builder.
    public init() {}

    /// Declares a trainable tensor and returns its ID.
    public mutating func addParameter(_ name: String, shape: [Int], role: ParameterRole)
        -> ParameterID
    {
        let spec = ParameterSpec(name: name, shape: shape, offset: parameterCount, role: role)
        specs.append(spec)
        parameterCount += spec.count
        return ParameterID(specs.count - 1)
    }

    /// Declares a buffer (running statistic) and returns its ID.
    public mutating func addBuffer(_ name: String, shape: [Int], role: BufferRole) -> BufferID {
        let spec = BufferSpec(name: name, shape: shape, offset: bufferCount, role: role)
        bufferSpecs.append(spec)
        bufferCount += spec.count
        return BufferID(bufferSpecs.count - 1)
    }

    /// Allocates zeroed value, gradient, momentum and buffer blocks for the declared tensors.
    public func build() -> ParameterStore {
        ParameterStore(specs: specs, bufferSpecs: bufferSpecs)
    }
}

/// Values, gradients and momentum of every trainable tensor (three blocks, one layout) and a
/// separate block of buffers.
public final class ParameterStore {
    /// Trainable tensors, in declaration order.
    public let specs: [ParameterSpec]
    /// Buffers, in declaration order.
    public let bufferSpecs: [BufferSpec]
    /// Parameter values, `count` floats.
    public let values: FloatBuffer
    /// Gradients, same layout as `values`. Backward kernels accumulate into it.
    public let grads: FloatBuffer
    /// Optimizer momentum, same layout as `values`.
    public let momentum: FloatBuffer
    /// BatchNorm running statistics.
    public let buffers: FloatBuffer
    private let indexByName: [String: Int]

    /// Allocates zeroed blocks for the given layouts.
    public init(specs: [ParameterSpec], bufferSpecs: [BufferSpec]) {
        self.specs = specs
        self.bufferSpecs = bufferSpecs
        let n = specs.reduce(0) { $0 + $1.count }
        let nb = bufferSpecs.reduce(0) { $0 + $1.count }
        values = FloatBuffer(count: n)
        grads = FloatBuffer(count: n)
        momentum = FloatBuffer(count: n)
        buffers = FloatBuffer(count: nb)
        var map: [String: Int] = [:]
        for (i, s) in specs.enumerated() { map[s.name] = i }
        for (i, s) in bufferSpecs.enumerated() { map["buffer:" + s.name] = i }
        indexByName = map
    }

    /// Total number of trainable scalars.
    public var parameterCount: Int { values.count }

    /// Looks a parameter up by its checkpoint name (for I/O only; code uses IDs and roles).
    public func parameterID(named name: String) -> ParameterID? {
        indexByName[name].map(ParameterID.init)
    }

    /// Looks a buffer up by its checkpoint name.
    public func bufferID(named name: String) -> BufferID? {
        indexByName["buffer:" + name].map(BufferID.init)
    }

    /// The spec of a parameter.
    public subscript(id: ParameterID) -> ParameterSpec { specs[id.index] }
    /// The spec of a buffer.
    public subscript(id: BufferID) -> BufferSpec { bufferSpecs[id.index] }

    /// Pointer to a parameter's values.
    public func value(_ id: ParameterID) -> UnsafeMutablePointer<Float> {
        values.pointer + specs[id.index].offset
    }
    /// Pointer to a parameter's gradient.
    public func grad(_ id: ParameterID) -> UnsafeMutablePointer<Float> {
        grads.pointer + specs[id.index].offset
    }
    /// Pointer to a parameter's momentum.
    public func momentum(_ id: ParameterID) -> UnsafeMutablePointer<Float> {
        momentum.pointer + specs[id.index].offset
    }
    /// Pointer to a buffer's values.
    public func buffer(_ id: BufferID) -> UnsafeMutablePointer<Float> {
        buffers.pointer + bufferSpecs[id.index].offset
    }

    /// Zeroes the gradient block (backward accumulates, so call this before each step).
    public func zeroGrad() { grads.zero() }

    /// A 64-bit FNV-1a checksum over the bytes of values and buffers; equal on replicas that
    /// hold bitwise-equal weights.
    public func checksum() -> UInt64 {
        var h = Checksum()
        h.add(values.buffer)
        h.add(buffers.buffer)
        return h.value
    }

    /// The name of the first tensor holding a NaN or ±inf, searching weights, BN buffers and
    /// (if `momentum`) the momentum, in that order; nil if every value is finite. Prefixes
    /// "momentum of " for a momentum tensor.
    public func firstNonFiniteTensor(momentum includeMomentum: Bool = false) -> String? {
        func bad(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Bool {
            // x · 0 is 0 for finite x and NaN for NaN or ±inf, so the sum is NaN exactly when
            // some value is not finite: one vectorisable pass with no branch per value.
            var acc: Float = 0
            for i in 0..<n { acc += p[i] * 0 }
            return !acc.isFinite
        }
        for (i, s) in specs.enumerated() where bad(value(ParameterID(i)), s.count) {
            return s.name
        }
        for (i, s) in bufferSpecs.enumerated() where bad(buffer(BufferID(i)), s.count) {
            return s.name
        }
        if includeMomentum {
            for (i, s) in specs.enumerated() where bad(momentum(ParameterID(i)), s.count) {
                return "momentum of " + s.name
            }
        }
        return nil
    }
}
