/// A tensor's bytes in place (in a mapped file or an owned buffer), row-major.
///
/// It does not own its memory: whoever handed it out (a ``SafetensorsFile`` or a
/// ``WeightSource``) must outlive it.
package struct TensorView: @unchecked Sendable {
    package let name: String
    package let dtype: DType
    package let shape: [Int]
    package let data: UnsafeRawPointer
    /// The GGUF block type of a quantized tensor (its rows are blocks; `dtype` is then meaningless), or nil.
    package let blockType: GGMLType?

    package init(name: String, dtype: DType, shape: [Int], data: UnsafeRawPointer, blockType: GGMLType? = nil) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.data = data
        self.blockType = blockType
    }

    package var count: Int { shape.reduce(1, *) }

    /// Element `i` widened to `Float`; for small tensors (norms, biases), not for hot loops.
    package func float(at i: Int) -> Float {
        precondition(blockType == nil, "tensor \(name) is block-quantized")
        switch dtype {
        case .f32: return data.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
        case .bf16:
            let bits = data.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
            return Float(bitPattern: UInt32(bits) << 16)
        case .f16:
            let bits = data.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
            return Float(Float16(bitPattern: bits))
        default:
            preconditionFailure("tensor \(name) of dtype \(dtype.rawValue) is not floating point")
        }
    }

    /// The whole tensor widened to `Float`.
    package func floats() -> [Float] {
        (0..<count).map { float(at: $0) }
    }
}

/// Where a model's named tensors come from: checkpoint files on disk or weights built in memory.
package protocol WeightSource: AnyObject, Sendable {
    /// The tensor called `name`, or nil when the source has none.
    func tensor(named name: String) -> TensorView?
}
