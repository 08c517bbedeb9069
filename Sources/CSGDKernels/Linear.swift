// Fully-connected layer, PyTorch nn.Linear semantics: weight [out, in], `y = x·Wᵀ + b`.

/// Linear forward: `output[N, O] = input[N, I] · weight[O, I]ᵀ + bias[O]`.
public func linearForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, n: Int, inFeatures: Int,
    outFeatures: Int
) {
    sgemm(
        transA: false, transB: true, m: n, n: outFeatures, k: inFeatures, alpha: 1, a: input,
        lda: inFeatures, b: weight, ldb: inFeatures, beta: 0, c: output, ldc: outFeatures)
    if let bias {
        for i in 0..<n {
            let y = output + i * outFeatures
            for o in 0..<outFeatures { y[o] += bias[o] }
        }
    }
}

/// Linear backward. ACCUMULATES into `dInput` (if non-nil), `dWeight` and `dBias`.
public func linearBackward(
    dInput: UnsafeMutablePointer<Float>?, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, dOutput: UnsafePointer<Float>,
    input: UnsafePointer<Float>, weight: UnsafePointer<Float>, n: Int, inFeatures: Int,
    outFeatures: Int
) {
    // dW[O, I] += dOut[N, O]ᵀ · in[N, I]
    sgemm(
        transA: true, transB: false, m: outFeatures, n: inFeatures, k: n, alpha: 1, a: dOutput,
        lda: outFeatures, b: input, ldb: inFeatures, beta: 1, c: dWeight, ldc: inFeatures)
    if let dBias {
        for i in 0..<n {
            let d = dOutput + i * outFeatures
            for o in 0..<outFeatures { dBias[o] += d[o] }
        }
    }
    if let dInput {
        // dIn[N, I] += dOut[N, O] · W[O, I]
        sgemm(
            transA: false, transB: false, m: n, n: inFeatures, k: outFeatures, alpha: 1,
            a: dOutput, lda: outFeatures, b: weight, ldb: inFeatures, beta: 1, c: dInput,
            ldc: inFeatures)
    }
}
