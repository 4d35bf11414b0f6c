import ModelText

/// Quantization of floats into GGUF blocks (docs/design/gguf.md, Quantizing), with the same f32 operations in the
/// same order as ggml's reference quantizer and the `gguf` Python package, so the bytes are identical: the built-in
/// engine quantizes a safetensors model on load with it (`--quantize`).
package enum Quantize {
    /// Quantizes `count` floats, a whole number of `type`'s blocks, into `output` (`count / 32 × blockBytes` bytes).
    /// - Precondition: `type` is one of ``GGMLType/onLoad`` and `count` a multiple of 32.
    /// - Throws: ``ModelError`` `invalidTensor` when a value is infinite or NaN.
    package static func blocks(_ type: GGMLType, _ input: UnsafePointer<Float>, count: Int, into output: UnsafeMutableRawPointer) throws(ModelError) {
        precondition(GGMLType.onLoad.contains(type) && count % 32 == 0, "cannot quantize \(count) floats to \(type)")
        for block in 0..<count / 32 {
            let x = input + block * 32, y = output + block * type.blockBytes
            guard (0..<32).allSatisfy({ x[$0].isFinite }) else {
                throw ModelError(.invalidTensor, "element \(block * 32 + (0..<32).first { !x[$0].isFinite }!) is not a finite number")
            }
            if type == .q8_0 { q8_0(x, y) } else { q4_0(x, y) }
        }
    }

    /// `d = amax / 127`, `q = round(x / d)` (halves away from zero, by the reciprocal as ggml does).
    private static func q8_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for i in 0..<32 { amax = max(amax, abs(x[i])) }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        y.storeBytes(of: Float16(d), as: Float16.self)
        for i in 0..<32 {
            // Within ±127 for finite values; the clamp only keeps a scale of infinity (|x| near Float's limit) from trapping.
            let q = (x[i] * id).rounded(.toNearestOrAwayFromZero)
            y.storeBytes(of: q.isNaN ? 0 : Int8(min(127, max(-127, q))), toByteOffset: 2 + i, as: Int8.self)
        }
    }

    /// `d = m / −8` where `m` is the first element of the largest magnitude (with its sign),
    /// `q = min(15, trunc(x / d + 8.5))`; elements 0–15 in the low nibbles, 16–31 in the high ones.
    private static func q4_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, m: Float = 0
        for i in 0..<32 where abs(x[i]) > amax {
            amax = abs(x[i])
            m = x[i]
        }
        let d = m / -8
        let id: Float = d == 0 ? 0 : 1 / d
        y.storeBytes(of: Float16(d), as: Float16.self)
        func nibble(_ value: Float) -> UInt8 {
            let q = (value * id + 8.5).rounded(.towardZero)
            return q.isNaN ? 0 : UInt8(min(15, max(0, q)))
        }
        for i in 0..<16 {
            y.storeBytes(of: nibble(x[i]) | nibble(x[i + 16]) << 4, toByteOffset: 2 + i, as: UInt8.self)
        }
    }
}
