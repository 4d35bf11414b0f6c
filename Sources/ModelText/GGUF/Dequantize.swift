import Foundation

/// The reference dequantization of the supported GGUF tensor types (docs/design/gguf.md, Tensor types):
/// each element computed with the same f32 operations, in the same order, as the `gguf` Python package, so
/// the results are bit-identical. For loading small tensors (norms, biases, embedding rows) and for tests;
/// the matrix kernels read the blocks directly.
package enum Dequantize {
    /// Dequantizes `count` elements, a whole number of `type`'s blocks, from `data` into `output`.
    /// - Throws: ``ModelError`` `invalidTensor` for an unsupported type, a partial block or too few bytes.
    package static func run(_ type: GGMLType, _ data: UnsafeRawBufferPointer, count: Int, into output: UnsafeMutablePointer<Float>) throws {
        guard type.isSupported else {
            let supported = GGMLType.supported.map(\.description).joined(separator: ", ")
            throw ModelError(.invalidTensor, "tensor type \(type) is not supported by the built-in engine (supported: \(supported))")
        }
        guard let bytes = type.rowBytes(count), bytes <= data.count, let base = data.baseAddress else {
            if count == 0 { return }
            throw ModelError(.invalidTensor, "\(count) \(type) elements do not fit the \(data.count) bytes given")
        }
        blocks(type, base, count: count / type.blockSize, into: output)
    }

    /// Dequantizes `count` blocks of a supported `type` at `base` into `output`, without checks: for callers
    /// that validated the type and the extent when they loaded the tensor.
    package static func blocks(_ type: GGMLType, _ base: UnsafeRawPointer, count: Int, into output: UnsafeMutablePointer<Float>) {
        for block in 0..<count {
            let x = base + block * type.blockBytes
            let y = output + block * type.blockSize
            switch type {
            case .f32: y[0] = x.loadUnaligned(as: Float.self)
            case .f16: y[0] = Float(x.loadUnaligned(as: Float16.self))
            case .bf16: y[0] = Float(bitPattern: UInt32(x.loadUnaligned(as: UInt16.self)) << 16)
            case .q8_0: q8_0(x, y)
            case .q4_0: q4_0(x, y)
            case .q4_K: q4_K(x, y)
            case .q5_K: q5_K(x, y)
            case .q6_K: q6_K(x, y)
            default: preconditionFailure("\(type) is not a supported type")
            }
        }
    }

    /// A whole tensor of `file` as floats.
    package static func floats(_ tensor: GGUFFile.TensorInfo, in file: GGUFFile) throws -> [Float] {
        let count = tensor.elementCount
        let data = file.data(of: tensor)
        do {
            return try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                if let base = buffer.baseAddress { try run(tensor.type, data, count: count, into: base) }
                initialized = count
            }
        } catch let error as ModelError {
            throw ModelError(error.code, "\(file.url.lastPathComponent): \(tensor.name): \(error.message)")
        }
    }

    private static func half(_ x: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(x.loadUnaligned(fromByteOffset: offset, as: Float16.self))
    }

    /// 32 elements: f16 scale `d`, 32 int8 `q`; `x = q × d`.
    private static func q8_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0)
        for i in 0..<32 { y[i] = Float(x.load(fromByteOffset: 2 + i, as: Int8.self)) * d }
    }

    /// 32 elements: f16 `d`, 16 bytes of nibbles (low nibbles are elements 0–15, high 16–31); `x = d × (q − 8)`.
    private static func q4_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0)
        for i in 0..<16 {
            let byte = x.load(fromByteOffset: 2 + i, as: UInt8.self)
            y[i] = d * Float(Int(byte & 0xF) - 8)
            y[i + 16] = d * Float(Int(byte >> 4) - 8)
        }
    }

    /// The 6-bit scale and min of sub-block `j` (0–7) of a Q4_K or Q5_K block, packed in 12 bytes.
    @inlinable
    package static func scaleMin(_ scales: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
        func byte(_ i: Int) -> UInt8 { scales.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 { return (byte(j) & 0x3F, byte(j + 4) & 0x3F) }
        return ((byte(j + 4) & 0x0F) | ((byte(j - 4) >> 2) & 0x30), (byte(j + 4) >> 4) | ((byte(j) >> 2) & 0x30))
    }

    /// 256 elements in 8 sub-blocks of 32: f16 `d` and `dmin`, 12 bytes of 6-bit scales and mins, 128 bytes of
    /// nibbles (each 32 bytes hold two sub-blocks, low nibbles first); `x = (d × scale) × q − dmin × min`.
    private static func q4_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), dmin = half(x, 2)
        let qs = x + 16
        for j in 0..<8 {
            let (scale, min) = scaleMin(x + 4, j)
            let ds = d * Float(scale), dm = dmin * Float(min)
            let shift = UInt8(4 * (j & 1))
            for i in 0..<32 {
                let q = (qs.load(fromByteOffset: (j / 2) * 32 + i, as: UInt8.self) >> shift) & 0xF
                y[j * 32 + i] = ds * Float(q) - dm
            }
        }
    }

    /// As Q4_K with a fifth bit per element: 32 bytes `qh` after the scales, bit `j` of `qh[i]` belonging to
    /// element `32j + i`.
    private static func q5_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), dmin = half(x, 2)
        let qh = x + 16, qs = x + 48
        for j in 0..<8 {
            let (scale, min) = scaleMin(x + 4, j)
            let ds = d * Float(scale), dm = dmin * Float(min)
            let shift = UInt8(4 * (j & 1))
            for i in 0..<32 {
                let low = (qs.load(fromByteOffset: (j / 2) * 32 + i, as: UInt8.self) >> shift) & 0xF
                let high = (qh.load(fromByteOffset: i, as: UInt8.self) >> UInt8(j)) & 1
                y[j * 32 + i] = ds * Float(low | high << 4) - dm
            }
        }
    }

    /// 256 elements in 16 groups of 16: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 int8 scales and an
    /// f16 `d` at the end. Each half of 128 elements uses 64 low bytes and 32 high bytes; `x = (d × scale) × (q − 32)`.
    private static func q6_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 208)
        for e in 0..<256 {
            let h = e / 128, r = e % 128
            let low = (x.load(fromByteOffset: h * 64 + r % 64, as: UInt8.self) >> UInt8(4 * (r / 64))) & 0xF
            let high = (x.load(fromByteOffset: 128 + h * 32 + r % 32, as: UInt8.self) >> UInt8(2 * (r / 32))) & 3
            let scale = Float(x.load(fromByteOffset: 192 + e / 16, as: Int8.self))
            y[e] = (d * scale) * Float(Int(low | high << 4) - 32)
        }
    }
}
