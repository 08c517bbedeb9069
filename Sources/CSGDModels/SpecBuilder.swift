// Writes GraphSpec node lists for the built-in families with the nominal widths; each call
// returns the new node's output tensor number.

/// Appends nodes to a spec under construction (see `GraphSpec` for tensor numbering).
struct SpecBuilder {
    private(set) var nodes: [NodeSpec] = []

    private mutating func append(_ n: NodeSpec) -> Int {
        nodes.append(n)
        return nodes.count
    }

    mutating func conv(
        _ name: String, _ x: Int, _ k: Int, kernel: Int, stride: Int, pad: Int, groups: Int = 1,
        bias: Bool = false
    ) -> Int {
        append(
            NodeSpec(
                op: .conv, name: name, inputs: [x], outChannels: k, kernel: kernel, stride: stride,
                pad: pad, groups: groups == 1 ? nil : groups, bias: bias ? true : nil))
    }

    mutating func depthwiseConv(_ name: String, _ x: Int, kernel: Int, stride: Int, pad: Int)
        -> Int
    {
        append(
            NodeSpec(
                op: .depthwiseConv, name: name, inputs: [x], kernel: kernel, stride: stride,
                pad: pad))
    }

    mutating func batchNorm(_ name: String, _ x: Int, relu: Bool) -> Int {
        append(NodeSpec(op: .batchNorm, name: name, inputs: [x], relu: relu ? true : nil))
    }

    mutating func relu(_ x: Int) -> Int { append(NodeSpec(op: .relu, inputs: [x])) }

    mutating func relu6(_ x: Int) -> Int { append(NodeSpec(op: .relu6, inputs: [x])) }

    mutating func add(_ a: Int, _ b: Int, relu: Bool) -> Int {
        append(NodeSpec(op: .add, inputs: [a, b], relu: relu ? true : nil))
    }

    mutating func concat(_ xs: [Int]) -> Int { append(NodeSpec(op: .concat, inputs: xs)) }

    mutating func maxPool(_ x: Int, kernel: Int, stride: Int, pad: Int) -> Int {
        append(NodeSpec(op: .maxPool, inputs: [x], kernel: kernel, stride: stride, pad: pad))
    }

    mutating func avgPool(_ x: Int, kernel: Int, stride: Int, pad: Int = 0) -> Int {
        append(
            NodeSpec(
                op: .avgPool, inputs: [x], kernel: kernel, stride: stride, pad: pad,
                countIncludePad: true))
    }

    mutating func globalAvgPool(_ x: Int) -> Int {
        append(NodeSpec(op: .globalAvgPool, inputs: [x]))
    }

    mutating func linear(_ name: String, _ x: Int, _ features: Int) -> Int {
        append(NodeSpec(op: .linear, name: name, inputs: [x], outChannels: features))
    }

    func finish(logits: Int) -> GraphSpec { GraphSpec(nodes: nodes, output: logits) }
}
