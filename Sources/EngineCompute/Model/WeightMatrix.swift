import ModelText

/// How a weight matrix's elements are stored; all three are read in place and widened to f32.
package enum WeightFormat: Sendable {
    case bf16
    case f16
    case f32

    package var size: Int { self == .f32 ? 4 : 2 }
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
        switch tensor.dtype {
        case .bf16: format = .bf16
        case .f16: format = .f16
        case .f32: format = .f32
        default:
            throw ModelError(.invalidTensor, "tensor \(tensor.name) is \(tensor.dtype.rawValue); weights must be BF16, F16 or F32")
        }
        self.init(rows: rows, columns: columns, format: format, data: tensor.data)
    }

    /// Row `row` widened into `output` (`columns` floats): the embedding lookup.
    package func copyRow(_ row: Int, to output: UnsafeMutablePointer<Float>) {
        let base = data + row * columns * format.size
        for column in 0..<columns {
            switch format {
            case .f32:
                output[column] = base.loadUnaligned(fromByteOffset: column * 4, as: Float.self)
            case .bf16:
                output[column] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: column * 2, as: UInt16.self)) << 16)
            case .f16:
                output[column] = Float(base.loadUnaligned(fromByteOffset: column * 2, as: Float16.self))
            }
        }
    }
}
