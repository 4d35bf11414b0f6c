import ModelText

/// How a weight matrix's elements are stored, all read in place: floats widened to f32, or GGUF blocks
/// (docs/design/gguf.md, Tensor types) multiplied with int8-quantized activations (``QuantizedMatMul``).
package enum WeightFormat: Sendable {
    case bf16
    case f16
    case f32
    case q8_0
    case q4_0
    case q4_K
    case q5_K
    case q6_K

    /// Bytes per element of the float formats.
    package var size: Int {
        switch self {
        case .f32: 4
        case .bf16, .f16: 2
        default: preconditionFailure("\(self) is block-quantized: use rowBytes")
        }
    }

    package var isQuantized: Bool { ![.bf16, .f16, .f32].contains(self) }

    /// The GGUF type of the same layout.
    package var ggmlType: GGMLType {
        switch self {
        case .bf16: .bf16
        case .f16: .f16
        case .f32: .f32
        case .q8_0: .q8_0
        case .q4_0: .q4_0
        case .q4_K: .q4_K
        case .q5_K: .q5_K
        case .q6_K: .q6_K
        }
    }

    /// The format of a GGUF type, or nil when the engine cannot compute with it.
    package init?(_ type: GGMLType) {
        let all: [WeightFormat] = [.bf16, .f16, .f32, .q8_0, .q4_0, .q4_K, .q5_K, .q6_K]
        guard let format = all.first(where: { $0.ggmlType == type }) else { return nil }
        self = format
    }

    /// Bytes of one row of `columns` elements (a whole number of blocks).
    package func rowBytes(_ columns: Int) -> Int {
        let type = ggmlType
        return columns / type.blockSize * type.blockBytes
    }
}

/// A row-major `rows × columns` weight matrix (PyTorch's `[out_features, in_features]`) in place.
package struct WeightMatrix: @unchecked Sendable {
    package let rows: Int
    package let columns: Int
    package let format: WeightFormat
    package let data: UnsafeRawPointer

    package init(rows: Int, columns: Int, format: WeightFormat, data: UnsafeRawPointer) {
        self.rows = rows
        self.columns = columns
        self.format = format
        self.data = data
    }

    /// Wraps a 2-D tensor, checking its shape.
    /// - Throws: ``ModelError`` `invalidTensor` for a wrong shape or a dtype the kernels cannot read.
    package init(_ tensor: TensorView, rows: Int, columns: Int) throws {
        guard tensor.shape == [rows, columns] else {
            throw ModelError(.invalidTensor, "tensor \(tensor.name) has shape \(tensor.shape), expected [\(rows), \(columns)]")
        }
        guard columns % 8 == 0 else {
            throw ModelError(.invalidTensor, "tensor \(tensor.name) has \(columns) columns; the kernels need a multiple of 8")
        }
        let format: WeightFormat
        if let blockType = tensor.blockType {
            guard let quantized = WeightFormat(blockType) else {
                throw ModelError(.invalidTensor, "tensor \(tensor.name) is \(blockType), which the built-in engine cannot compute with")
            }
            format = quantized
        } else {
            switch tensor.dtype {
            case .bf16: format = .bf16
            case .f16: format = .f16
            case .f32: format = .f32
            default:
                throw ModelError(.invalidTensor, "tensor \(tensor.name) is \(tensor.dtype.rawValue); weights must be BF16, F16 or F32")
            }
        }
        self.init(rows: rows, columns: columns, format: format, data: tensor.data)
    }

    /// Rows `range` of the matrix, in place: one part of a fused matrix (Phi-3's `qkv_proj`, `gate_up_proj`).
    package func rows(_ range: Range<Int>) -> WeightMatrix {
        let rowBytes = format.isQuantized ? format.rowBytes(columns) : columns * format.size
        return WeightMatrix(rows: range.count, columns: columns, format: format, data: data + range.lowerBound * rowBytes)
    }

    /// Row `row` widened into `output` (`columns` floats): the embedding lookup.
    package func copyRow(_ row: Int, to output: UnsafeMutablePointer<Float>) {
        if format.isQuantized {
            let type = format.ggmlType
            Dequantize.blocks(type, data + row * format.rowBytes(columns), count: columns / type.blockSize, into: output)
            return
        }
        let base = data + row * columns * format.size
        for column in 0..<columns {
            switch format {
            case .f32:
                output[column] = base.loadUnaligned(fromByteOffset: column * 4, as: Float.self)
            case .bf16:
                output[column] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: column * 2, as: UInt16.self)) << 16)
            case .f16:
                output[column] = Float(base.loadUnaligned(fromByteOffset: column * 2, as: Float16.self))
            default:
                preconditionFailure("quantized rows are dequantized above")
            }
        }
    }
}
