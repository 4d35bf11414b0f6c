import Glibc
import ModelText
import Synchronization

/// A safetensors checkpoint's weights quantized on load (`modeld engine --quantize q8_0|q4_0`; docs/design/gguf.md,
/// Quantizing): every matrix whose rows are whole 32-element blocks becomes GGUF blocks in memory, which the
/// quantized kernels compute with; the other tensors (norms, biases) are copied. It owns all of it, so the
/// checkpoint's mapped files are released once the model is built: the model then takes about its quantized size
/// (docs/quantization.md).
package final class QuantizedWeights: WeightSource, @unchecked Sendable {
    package let type: GGMLType
    private let tensors: [String: TensorView]
    private let buffers: [UnsafeMutableRawBufferPointer]

    /// Quantizes `checkpoint`'s matrices to `type` (one of ``GGMLType/onLoad``), rows split over `pool`'s threads.
    /// - Throws: ``ModelError`` `invalidTensor` naming a matrix that holds an infinite or NaN value.
    package init(_ checkpoint: Checkpoint, type: GGMLType, pool: ThreadPool = .shared) throws {
        precondition(GGMLType.onLoad.contains(type), "\(type) is not an on-load quantization")
        self.type = type
        var tensors: [String: TensorView] = [:]
        var buffers: [UnsafeMutableRawBufferPointer] = []
        do {
            for name in checkpoint.tensorNames {
                guard let tensor = checkpoint.tensor(named: name) else { continue }
                let isMatrix = tensor.shape.count == 2 && tensor.shape[1] % type.blockSize == 0 && [.bf16, .f16, .f32].contains(tensor.dtype)
                let bytes = isMatrix ? tensor.shape[0] * type.blockBytes * tensor.shape[1] / type.blockSize : tensor.count * tensor.dtype.size
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes, 1), alignment: 64)
                buffers.append(buffer)
                if isMatrix {
                    try Self.quantize(tensor, to: type, into: buffer, pool: pool)
                    Self.release(tensor)
                    tensors[name] = TensorView(
                        name: name, dtype: .u8, shape: tensor.shape, data: UnsafeRawPointer(buffer.baseAddress!), blockType: type)
                } else {
                    buffer.baseAddress!.copyMemory(from: tensor.data, byteCount: bytes)
                    tensors[name] = TensorView(name: name, dtype: tensor.dtype, shape: tensor.shape, data: UnsafeRawPointer(buffer.baseAddress!))
                }
            }
        } catch {
            buffers.forEach { $0.deallocate() }
            throw error
        }
        self.tensors = tensors
        self.buffers = buffers
    }

    deinit {
        buffers.forEach { $0.deallocate() }
    }

    package func tensor(named name: String) -> TensorView? { tensors[name] }

    /// Lets the kernel drop the checkpoint's pages of a tensor already quantized: the mapping is private and
    /// read-only, so they would only be read from the file again. Loading then peaks near the quantized size plus
    /// the largest tensor, not plus the whole checkpoint.
    private static func release(_ tensor: TensorView) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: tensor.data), end = start + tensor.count * tensor.dtype.size
        let first = (start + page - 1) / page * page, last = end / page * page
        guard last > first, let address = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(address, last - first, MADV_DONTNEED)
    }

    /// The rows of a float matrix widened and quantized, in parallel.
    private static func quantize(_ tensor: TensorView, to type: GGMLType, into output: UnsafeMutableRawBufferPointer, pool: ThreadPool) throws {
        let columns = tensor.shape[1], rowBytes = columns / type.blockSize * type.blockBytes
        let matrix = try WeightMatrix(tensor, rows: tensor.shape[0], columns: columns)
        let failure = Mutex<ModelError?>(nil)
        pool.forEachRange(tensor.shape[0]) { rows in
            let row = UnsafeMutablePointer<Float>.allocate(capacity: columns)
            defer { row.deallocate() }
            for r in rows {
                matrix.copyRow(r, to: row)
                do throws(ModelError) {
                    try Quantize.blocks(type, row, count: columns, into: output.baseAddress! + r * rowBytes)
                } catch {
                    failure.withLock { $0 = $0 ?? ModelError(error.code, "tensor \(tensor.name), row \(r): \(error.message)") }
                    return
                }
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }
}
