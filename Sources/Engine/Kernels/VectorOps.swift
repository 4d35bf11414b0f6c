#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The small per-token operations of a forward pass, in f32 as transformers computes them.
package enum VectorOps {
    /// `output = x * rsqrt(mean(x²) + eps) * weight` over `count` floats (RMSNorm in f32).
    package static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float, count: Int,
        output: UnsafeMutablePointer<Float>
    ) {
        var sum = SIMD8<Float>()
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(x).loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
            sum = sum.addingProduct(v, v)
            i += 8
        }
        var total = sum.sum()
        while i < count {
            total += x[i] * x[i]
            i += 1
        }
        let scale = 1 / sqrtf(total / Float(count) + eps)
        for j in 0..<count { output[j] = (x[j] * scale) * weight[j] }
    }

    /// `gate[i] = silu(gate[i]) * up[i]`: the gated MLP's activation, fused into one pass.
    package static func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// `x[i] += y[i]`: a residual connection.
    package static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { x[i] += y[i] }
    }

    /// Softmax in place over `count` floats, with the maximum subtracted first.
    package static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        var maximum = -Float.infinity
        for i in 0..<count { maximum = max(maximum, x[i]) }
        var sum: Float = 0
        for i in 0..<count {
            let e = expf(x[i] - maximum)
            x[i] = e
            sum += e
        }
        let inverse = 1 / sum
        for i in 0..<count { x[i] *= inverse }
    }
}
