import BuiltinEngine
import EngineCompute
import Foundation
import Testing

@testable import ModelText

/// The integer kernels against the reference dequantizer: a product of block-quantized weights with quantized
/// activations equals, up to f32 rounding, the dot product of the dequantized weights with the dequantized
/// activations.
@Suite("quantized matrix products")
struct QuantizedMatMulTests {
    static let formats: [WeightFormat] = [.q8_0, .q4_0, .q4_K, .q5_K, .q6_K]

    /// Random blocks with finite scales of moderate size (the other bytes random).
    static func randomMatrix(rows: Int, columns: Int, format: WeightFormat, seed: UInt64) -> UnsafeMutableRawPointer {
        var random = SeededGenerator(seed: seed)
        let type = format.ggmlType
        let bytes = rows * format.rowBytes(columns)
        let data = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        for i in 0..<bytes { data.storeBytes(of: UInt8.random(in: 0...255, using: &random), toByteOffset: i, as: UInt8.self) }
        let halves: [Int] =
            switch format {
            case .q4_K, .q5_K: [0, 2]
            case .q6_K: [208]
            default: [0]
            }
        for block in 0..<(bytes / type.blockBytes) {
            for offset in halves {
                let value = Float16(Float.random(in: -0.05...0.05, using: &random))
                data.storeBytes(of: value, toByteOffset: block * type.blockBytes + offset, as: Float16.self)
            }
        }
        return data
    }

    /// The instruction sets whose kernels differ on this CPU: AVX2, and AVX-512 VNNI where the CPU has it.
    static let instructionSets: [InstructionSet] = InstructionSet.cpuHasVNNI ? [.avx2, .avx512] : [.avx2]

    /// Rows and columns that are not multiples of the kernels' steps: an odd number of 32-element blocks (the
    /// VNNI kernels take two at a time), an odd number of 256-element k-quant blocks, rows not a multiple of 4.
    static func shape(_ format: WeightFormat) -> (rows: Int, columns: Int) {
        [.q8_0, .q4_0].contains(format) ? (37, 416) : (37, 768)
    }

    @Test(
        "every format and kernel, decode, batches and prefill, with bias and accumulation",
        arguments: formats, instructionSets)
    func matchesDequantized(format: WeightFormat, instructionSet: InstructionSet) throws {
        let (rows, columns) = Self.shape(format)
        let data = Self.randomMatrix(rows: rows, columns: columns, format: format, seed: 11)
        defer { data.deallocate() }
        let weights = WeightMatrix(rows: rows, columns: columns, format: format, data: data)
        var dequantized = [Float](repeating: 0, count: rows * columns)
        for row in 0..<rows { dequantized.withUnsafeMutableBufferPointer { weights.copyRow(row, to: $0.baseAddress! + row * columns) } }
        let bias = (0..<rows).map { Float($0) / 7 }
        for tokens in [1, 2, 3, 4, 5, 9] {
            var random = SeededGenerator(seed: UInt64(tokens))
            let x = (0..<tokens * columns).map { _ in Float.random(in: -2...2, using: &random) }
            // The activations as the kernels see them: quantized to int8 blocks, then back.
            var restored = [Float](repeating: 0, count: x.count)
            x.withUnsafeBufferPointer { xs in
                QuantizedActivations.with(x: xs.baseAddress!, xStride: columns, tokens: tokens, columns: columns, pool: .shared) { a in
                    for i in 0..<x.count { restored[i] = Float(a.values[i]) * a.scales[i / 32] }
                }
            }
            var y = [Float](repeating: 1, count: tokens * rows)
            x.withUnsafeBufferPointer { xs in
                bias.withUnsafeBufferPointer { b in
                    y.withUnsafeMutableBufferPointer { ys in
                        matmul(
                            weights, x: xs.baseAddress!, xStride: columns, tokens: tokens, y: ys.baseAddress!, yStride: rows,
                            bias: b.baseAddress!, accumulate: true, pool: .shared, instructionSet: instructionSet)
                    }
                }
            }
            for t in 0..<tokens {
                for r in 0..<rows {
                    var sum = 0.0, magnitude = 0.0
                    for k in 0..<columns {
                        let product = Double(dequantized[r * columns + k]) * Double(restored[t * columns + k])
                        sum += product
                        magnitude += abs(product)
                    }
                    let expected = 1 + sum + Double(bias[r])
                    #expect(
                        abs(Double(y[t * rows + r]) - expected) <= 1e-5 * magnitude + 1e-5,
                        "\(format) \(instructionSet) \(tokens) tokens, token \(t) row \(r): \(y[t * rows + r]) vs \(expected)")
                }
            }
        }
    }
}
