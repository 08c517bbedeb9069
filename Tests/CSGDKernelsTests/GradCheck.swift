// A reusable finite-difference gradient check for the kernels (tinygrad style: one call per
// case). It checks three things for every differentiable input of a kernel:
//   1. analytic gradient ≈ central difference of L = Σ r_i·y_i (r: fixed seeded projection),
//   2. backward ACCUMULATES: with the gradient buffer pre-filled with P it yields P + gradient
//      (or, for kernels documented to overwrite, exactly the gradient),
//   3. on failure it names the first offending entries and the max relative error.
//
// Choosing h and rtol (Float32 forward, L summed in Double):
//   The numeric derivative (L(x+h) − L(x−h)) / 2h has two error sources.
//   • Truncation, (h²/6)·∂³L/∂x³. It is exactly zero for ops that are linear in each single
//     entry (conv, linear: bilinear in input and weight, but only one entry moves at a time;
//     add; average pool), zero for piecewise-linear ops as long as x ± h crosses no kink
//     (relu, max pool), and small for smooth ops (BatchNorm ≈ h²/(m·σ³): each x moves the
//     batch statistics by O(1/m); softmax ≈ h²/6).
//   • Rounding: only outputs that depend on x change between the two evaluations (the rest
//     are bitwise identical, and r_i·y_i is exact in Double), each carrying a Float32 rounding
//     error ≈ ε·|y|·√(terms), ε = 6e-8. The derivative error is ≈ √(#affected)·ε·|y|·|r| / h.
//   So h is as large as the op allows (see `Step`): noise ∝ 1/h and, for linear ops, nothing
//   grows with h. Measured on a C=16, 3×3 conv (|y| ≈ 2, 18 affected outputs) the noise at
//   h = 1e-2 is ≈ 5e-5 absolute, which against the 1e-3 denominator floor is already 5e-2 for
//   an entry whose true gradient happens to be ~0; h = 0.5 brings it to ≈ 1e-6.
//   rtol = 1e-2 everywhere: the estimates above put honest errors at ≈ 1e-3 at worst (BatchNorm,
//   whose perturbation re-rounds all m outputs of a channel: √m·ε·|y|/h ≈ 1e-3 at m = 45,
//   h = 1e-3; measured max 1.6e-3; conv/linear measured ≤ 2e-4), a ≥ 6× margin, while every
//   real bug tried (dropped term, wrong index, lost accumulation) gives relative errors of
//   order 0.05–1. The step actually taken is
//   (x+h) − (x−h) evaluated in Float, so the rounding of x ± h itself costs nothing.
//   The denominator floor 1e-3 in |a − n| / max(1e-3, |a| + |n|) keeps entries whose true
//   gradient is 0 (e.g. relu's dead inputs) from dividing noise by noise.

import CSGDCore
import CSGDKernels
import XCTest

/// Finite-difference steps, from the reasoning at the top of this file.
enum Step {
    /// Ops linear in each single entry (conv, linear, add, average pool): the central
    /// difference is exact at any h, rounding noise falls as 1/h, so take a big step.
    static let linear: Float = 0.5
    /// Piecewise-linear ops (relu, max pool): exact between kinks, so h is bounded only by the
    /// distance from each input to its nearest kink, which the tests keep ≥ 2h.
    static let piecewiseLinear: Float = 1e-2
    /// BatchNorm: balances truncation (∝ h²) against rounding over a whole channel (∝ 1/h).
    static let batchNorm: Float = 1e-3
    /// Softmax cross-entropy: truncation ≈ h²/6 ≈ 2e-5 against rounding ≈ ε/h ≈ 6e-6.
    static let softmax: Float = 1e-2
}

/// One differentiable input: its values (perturbed by the check) and the gradient buffer the
/// kernel's backward writes into.
struct GradInput {
    let label: String
    let value: FloatBuffer
    let grad: FloatBuffer

    init(_ label: String, _ value: FloatBuffer, _ grad: FloatBuffer) {
        self.label = label
        self.value = value
        self.grad = grad
    }
}

/// How a backward treats its gradient outputs.
enum GradientSemantics {
    /// `grad += ∂L/∂x` (llm.c convention; every kernel except the loss).
    case accumulates
    /// `grad = ∂L/∂x` (the loss, where the chain rule starts).
    case overwrites
}

/// Summary of one check (returned so callers may print or assert more).
struct GradCheckReport {
    var maxRelError = 0.0
    var checkedEntries = 0
}

/// Gradient check for a kernel with a tensor output `y`; the objective is `L = Σ r_i·y_i`.
/// - Parameters:
///   - inputs: every tensor to differentiate, with the buffer its gradient goes to.
///   - state: buffers the forward mutates as a side effect (BatchNorm running stats):
///     snapshotted once, restored before every forward so each evaluation starts from the
///     same state, and restored at the end.
///   - h, rtol: step and tolerance (see the top of this file and `Step`).
///   - semantics: whether backward accumulates into or overwrites its gradients.
///   - samples: inputs with more entries get this many seeded random entries checked
///     numerically (accumulation is still checked on every entry).
///   - forward: runs the forward pass on the current input values and returns (output, count).
///   - backward: runs the backward pass given `dOutput` (right after a `forward()`).
@discardableResult
func checkGradients(
    _ name: String, inputs: [GradInput], state: [FloatBuffer] = [], h: Float, rtol: Double,
    semantics: GradientSemantics = .accumulates, samples: Int = 256, seed: UInt64 = 0x5eed,
    forward: @escaping () -> (UnsafePointer<Float>, Int),
    backward: @escaping (UnsafePointer<Float>) -> Void,
    file: StaticString = #filePath, line: UInt = #line
) -> GradCheckReport {
    let snapshot = state.map { $0.array }
    let restore = {
        for (buffer, values) in zip(state, snapshot) {
            for i in 0..<values.count { buffer[i] = values[i] }
        }
    }
    restore()
    let outputCount = forward().1
    var rng = Rng.derived(seed: seed, 1)
    // Projection in ±[0.5, 1.5): no entry near 0, so every output matters.
    let r = FloatBuffer(
        (0..<outputCount).map { _ in
            let v = 0.5 + rng.nextFloat()
            return rng.nextFloat() < 0.5 ? -v : v
        })
    let objective: () -> Double = {
        restore()
        let (y, count) = forward()
        var sum = 0.0
        for i in 0..<count { sum += Double(r[i]) * Double(y[i]) }
        return sum
    }
    let runBackward: () -> Void = {
        restore()
        _ = forward()
        backward(UnsafePointer(r.pointer))
    }
    let report = gradCheckEngine(
        name, inputs: inputs, h: h, rtol: rtol, semantics: semantics, samples: samples,
        seed: seed, objective: objective, runBackward: runBackward, file: file, line: line)
    restore()
    return report
}

/// Gradient check for a kernel with a scalar output (a loss): the objective is the scalar.
@discardableResult
func checkScalarGradients(
    _ name: String, inputs: [GradInput], h: Float, rtol: Double,
    semantics: GradientSemantics = .accumulates, samples: Int = 256, seed: UInt64 = 0x5eed,
    forward: @escaping () -> Double, backward: @escaping () -> Void,
    file: StaticString = #filePath, line: UInt = #line
) -> GradCheckReport {
    gradCheckEngine(
        name, inputs: inputs, h: h, rtol: rtol, semantics: semantics, samples: samples,
        seed: seed, objective: forward, runBackward: backward, file: file, line: line)
}

/// The shared core: analytic pass from zero, analytic pass from a pre-fill, numeric pass.
private func gradCheckEngine(
    _ name: String, inputs: [GradInput], h: Float, rtol: Double,
    semantics: GradientSemantics, samples: Int, seed: UInt64,
    objective: () -> Double, runBackward: () -> Void, file: StaticString, line: UInt
) -> GradCheckReport {
    var report = GradCheckReport()
    // 1. Analytic gradient from zeroed buffers.
    for input in inputs { input.grad.zero() }
    runBackward()
    let analytic = inputs.map { $0.grad.array }

    // 2. Same again from a seeded non-zero pre-fill: must give prefill + gradient.
    var fillRng = Rng.derived(seed: seed, 2)
    let prefills: [[Float]] = inputs.map { input in
        (0..<input.grad.count).map { _ in
            let v = 0.5 + fillRng.nextFloat()
            return fillRng.nextFloat() < 0.5 ? -v : v
        }
    }
    for (input, fill) in zip(inputs, prefills) {
        for i in 0..<fill.count { input.grad[i] = fill[i] }
    }
    runBackward()
    for (k, input) in inputs.enumerated() {
        var bad: [String] = []
        var badCount = 0
        for i in 0..<input.grad.count {
            let a = Double(analytic[k][i])
            let p = Double(prefills[k][i])
            let got = Double(input.grad[i])
            // Accumulating adds the pre-fill with a few extra Float roundings (ε = 6e-8 each)
            // of partial sums no larger than ~|P| + |g|; a lost or doubled pre-fill is off by
            // |P| ≥ 0.5. 1e-5 relative sits between the two by orders of magnitude.
            let expected = semantics == .accumulates ? p + a : a
            if abs(got - expected) > 1e-5 * (1 + abs(p) + abs(a)) {
                badCount += 1
                if bad.count < 5 {
                    bad.append("\(input.label)[\(i)] got \(got) expected \(expected) (fill \(p))")
                }
            }
        }
        if badCount > 0 {
            let what =
                semantics == .accumulates ? "does not accumulate" : "does not overwrite"
            XCTFail(
                "\(name): backward \(what) into \(input.label) (\(badCount) of "
                    + "\(input.grad.count) entries): " + bad.joined(separator: "; "),
                file: file, line: line)
        }
    }

    // 3. Central differences on every entry (or a seeded sample of big tensors).
    var pickRng = Rng.derived(seed: seed, 3)
    for (k, input) in inputs.enumerated() {
        let count = input.value.count
        let indices =
            count <= samples ? Array(0..<count) : Array(pickRng.permutation(count).prefix(samples))
        var maxRel = 0.0
        var worst = ""
        var offenders: [String] = []
        var offenderCount = 0
        for i in indices {
            let x = input.value[i]
            let xPlus = x + h
            let xMinus = x - h
            input.value[i] = xPlus
            let lPlus = objective()
            input.value[i] = xMinus
            let lMinus = objective()
            input.value[i] = x
            let numeric = (lPlus - lMinus) / (Double(xPlus) - Double(xMinus))
            let a = Double(analytic[k][i])
            let rel = abs(a - numeric) / max(1e-3, abs(a) + abs(numeric))
            let entry = "\(input.label)[\(i)] analytic \(a) numeric \(numeric) rel \(rel)"
            if rel > maxRel {
                maxRel = rel
                worst = entry
            }
            if rel > rtol {
                offenderCount += 1
                if offenders.count < 5 { offenders.append(entry) }
            }
        }
        report.checkedEntries += indices.count
        report.maxRelError = max(report.maxRelError, maxRel)
        if offenderCount > 0 {
            XCTFail(
                "\(name): \(input.label) gradient wrong at \(offenderCount) of \(indices.count) "
                    + "checked entries (rtol \(rtol)); max rel error \(maxRel) at \(worst); first: "
                    + offenders.joined(separator: "; "),
                file: file, line: line)
        }
        if ProcessInfo.processInfo.environment["GRADCHECK_VERBOSE"] != nil {
            print("gradcheck \(name) \(input.label): \(indices.count) entries, max rel \(maxRel)")
        }
    }
    return report
}

/// A buffer of `count` seeded values uniform in [lo, hi).
func randomBuffer(_ count: Int, seed: UInt64, _ lo: Float = -1, _ hi: Float = 1) -> FloatBuffer {
    var rng = Rng(seed: seed)
    return FloatBuffer((0..<count).map { _ in lo + (hi - lo) * rng.nextFloat() })
}
