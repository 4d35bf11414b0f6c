import BuiltinEngine
import Foundation
import Testing

@testable import EngineCompute
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
            // The activations as the kernels see them: quantized to int8 blocks (of 256 for one token's Q4_K and
            // Q6_K on VNNI), then back.
            var restored = [Float](repeating: 0, count: x.count)
            let superBlocks = QuantizedMatMul.usesSuperBlocks([weights], tokens: tokens, instructionSet: instructionSet)
            x.withUnsafeBufferPointer { xs in
                QuantizedActivations.with(
                    x: xs.baseAddress!, xStride: columns, tokens: tokens, columns: columns, superBlocks: superBlocks, pool: .shared
                ) { a in
                    for i in 0..<x.count {
                        if let wide = a.superBlocks {
                            restored[i] = Float(wide.values[i]) * wide.scales[i / 256]
                        } else {
                            restored[i] = Float(a.values[i]) * a.scales[i / 32]
                        }
                    }
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

    /// One token against Q4_K and Q6_K weights (DecodeQuantized.c): the activations quantized per block of 256
    /// within half a step of each value with exact sums of 16, and the products, over row ranges that split
    /// unevenly into the kernel's four streams, equal the dequantized weights times the quantized activations up
    /// to f32 rounding, and the float activations within the quantization's bound.
    @Test(
        "one token of Q4_K and Q6_K: super-block activations, row ranges, bias and accumulation",
        .enabled(if: InstructionSet.cpuHasVNNI), arguments: [WeightFormat.q4_K, .q6_K])
    func decodesSuperBlocks(format: WeightFormat) throws {
        let rows = 41, columns = 1280
        let data = Self.randomMatrix(rows: rows, columns: columns, format: format, seed: 5)
        defer { data.deallocate() }
        let weights = WeightMatrix(rows: rows, columns: columns, format: format, data: data)
        var dequantized = [Float](repeating: 0, count: rows * columns)
        for row in 0..<rows { dequantized.withUnsafeMutableBufferPointer { weights.copyRow(row, to: $0.baseAddress! + row * columns) } }
        var random = SeededGenerator(seed: 17)
        // Blocks of different magnitudes, one of them all zeros.
        var x = [Float](repeating: 0, count: columns)
        for i in 0..<columns where i / 256 != 2 { x[i] = Float.random(in: -1...1, using: &random) * Float(1 + i / 256) }
        let bias: [Float] = (0..<rows).map { Float($0) / 5 - 3 }
        #expect(QuantizedMatMul.usesSuperBlocks([weights], tokens: 1, instructionSet: .avx512))
        x.withUnsafeBufferPointer { xs in
            QuantizedActivations.with(x: xs.baseAddress!, xStride: columns, tokens: 1, columns: columns, superBlocks: true, pool: .shared) { a in
                let wide = a.superBlocks!
                for b in 0..<columns / 256 {
                    let largest = x[(b * 256)..<(b * 256 + 256)].map(abs).max()!
                    #expect(wide.scales[b] == largest / 127)
                    for i in (b * 256)..<(b * 256 + 256) {
                        #expect(abs(x[i] - Float(wide.values[i]) * wide.scales[b]) <= wide.scales[b] * 0.5001, "element \(i)")
                    }
                }
                for g in 0..<columns / 16 {
                    #expect(Int(wide.sums[g]) == (0..<16).reduce(0) { $0 + Int(wide.values[g * 16 + $1]) }, "sum \(g)")
                }
                let cases: [(rows: Range<Int>, bias: Bool, accumulate: Bool)] = [
                    (0..<rows, false, false), (3..<40, true, true), (5..<6, true, false), (1..<38, false, true), (7..<7, true, true),
                ]
                for (range, withBias, accumulate) in cases {
                    var y = [Float](repeating: 1.5, count: rows)
                    bias.withUnsafeBufferPointer { b in
                        y.withUnsafeMutableBufferPointer { ys in
                            QuantizedMatMul.multiply(
                                weights, rows: range, activations: a, tokens: 1, y: ys.baseAddress!, yStride: rows,
                                bias: withBias ? b.baseAddress! : nil, accumulate: accumulate, instructionSet: .avx512)
                        }
                    }
                    for r in 0..<rows {
                        guard range.contains(r) else {
                            #expect(y[r] == 1.5, "row \(r) outside \(range)")
                            continue
                        }
                        var quantized = 0.0, exact = 0.0, magnitude = 0.0, bound = 0.0
                        for k in 0..<columns {
                            let w = Double(dequantized[r * columns + k])
                            quantized += w * Double(wide.values[k]) * Double(wide.scales[k / 256])
                            exact += w * Double(x[k])
                            magnitude += abs(w * Double(x[k]))
                            bound += abs(w) * Double(wide.scales[k / 256]) / 2
                        }
                        let base = (accumulate ? 1.5 : 0) + (withBias ? Double(bias[r]) : 0)
                        let value = Double(y[r]) - base
                        #expect(abs(value - quantized) <= 1e-5 * magnitude + 1e-5, "\(format) \(range) row \(r): \(value) vs \(quantized)")
                        #expect(abs(value - exact) <= bound + 1e-5 * magnitude + 1e-5, "\(format) \(range) row \(r): \(value) vs \(exact)")
                    }
                }
            }
        }
    }

    /// The VNNI kernels (row by row for few tokens, register tiles from eight on; Q4_0 and Q5_K have only the
    /// latter and the AVX2 kernels below eight) against the plain product in Double, for every token count up to 40
    /// and ranges of rows that start and end anywhere: rows outside the range keep their values. Column counts leave
    /// the tiles' last chunk part empty (Q8_0, Q4_0: 39 blocks; k-quants: 5 blocks of 256); the widest (25 blocks
    /// of 256) splits 40 tokens' activations into several column blocks.
    @Test(
        "VNNI kernels, 1 to 40 tokens, row ranges, bias and accumulation", .enabled(if: InstructionSet.cpuHasVNNI),
        arguments: formats)
    func vnniMatchesReference(format: WeightFormat) {
        checkVNNI(format: format, columns: [.q8_0, .q4_0].contains(format) ? 1248 : 1280, tokenCounts: Array(1...40))
        checkVNNI(format: format, columns: 6400, tokenCounts: [9, 40])
    }

    private func checkVNNI(format: WeightFormat, columns: Int, tokenCounts: [Int]) {
        let rows = 23
        let data = Self.randomMatrix(rows: rows, columns: columns, format: format, seed: 5)
        defer { data.deallocate() }
        let weights = WeightMatrix(rows: rows, columns: columns, format: format, data: data)
        var dequantized = [Float](repeating: 0, count: rows * columns)
        for row in 0..<rows { dequantized.withUnsafeMutableBufferPointer { weights.copyRow(row, to: $0.baseAddress! + row * columns) } }
        let bias = (0..<rows).map { Float($0) / 3 - 2 }
        let ranges = [0..<rows, 5..<18, 7..<8, 1..<22]
        for tokens in tokenCounts {
            let range = ranges[tokens % ranges.count]
            let accumulate = tokens % 2 == 0, withBias = tokens % 3 != 0
            var random = SeededGenerator(seed: UInt64(100 + tokens))
            let x = (0..<tokens * columns).map { _ in Float.random(in: -3...3, using: &random) }
            let initial = (0..<tokens * rows).map { Float($0 % 7) - 3 }
            var y = initial
            var restored = [Float](repeating: 0, count: x.count)
            x.withUnsafeBufferPointer { xs in
                QuantizedActivations.with(x: xs.baseAddress!, xStride: columns, tokens: tokens, columns: columns, pool: .shared) { a in
                    for i in 0..<x.count { restored[i] = Float(a.values[i]) * a.scales[i / 32] }
                    bias.withUnsafeBufferPointer { b in
                        y.withUnsafeMutableBufferPointer { ys in
                            QuantizedMatMul.multiply(
                                weights, rows: range, activations: a, tokens: tokens, y: ys.baseAddress!, yStride: rows,
                                bias: withBias ? b.baseAddress! : nil, accumulate: accumulate, instructionSet: .avx512)
                        }
                    }
                }
            }
            for t in 0..<tokens {
                for r in 0..<rows {
                    let index = t * rows + r
                    guard range.contains(r) else {
                        #expect(y[index] == initial[index], "\(format) \(tokens) tokens: row \(r) outside \(range) changed")
                        continue
                    }
                    var sum = 0.0, magnitude = 0.0
                    for k in 0..<columns {
                        let product = Double(dequantized[r * columns + k]) * Double(restored[t * columns + k])
                        sum += product
                        magnitude += abs(product)
                    }
                    let expected = sum + (withBias ? Double(bias[r]) : 0) + (accumulate ? Double(initial[index]) : 0)
                    #expect(
                        abs(Double(y[index]) - expected) <= 1e-5 * magnitude + 1e-5,
                        "\(format) \(tokens) tokens, token \(t) row \(r): \(y[index]) vs \(expected)")
                }
            }
        }
    }

    /// The activations' quantization (in C where the CPU has AVX-512) against its definition: per block of 32,
    /// `d = max|x| / 127`, `q = x · (1 / d)` rounded half away from zero, `s = d · Σq`; including a block of zeros,
    /// blocks with exact halves and blocks split between the pool's jobs.
    @Test("activations quantized per block as defined")
    func activationsMatchDefinition() {
        let tokens = 9, columns = 2080
        var random = SeededGenerator(seed: 3)
        var x = (0..<tokens * columns).map { _ in Float.random(in: -4...4, using: &random) }
        for i in 0..<32 { x[i] = 0 }
        for i in 32..<64 { x[i] = Float(i - 48) / 2 }  // max 8: q = 127 · x / 8, halves at odd multiples of 8 / 254
        for i in 64..<96 { x[i] = [8, -8, 8 * 3 / 254, -8 * 5 / 254][i % 4] }
        x.withUnsafeBufferPointer { xs in
            QuantizedActivations.with(x: xs.baseAddress!, xStride: columns, tokens: tokens, columns: columns, pool: .shared) { a in
                for block in 0..<(tokens * columns / 32) {
                    let values = x[(block * 32)..<(block * 32 + 32)]
                    let d = values.map(abs).max()! / 127, inverse: Float = d == 0 ? 0 : 1 / d
                    let q = values.map { Int8(($0 * inverse).rounded(.toNearestOrAwayFromZero)) }
                    #expect(a.scales[block] == d, "block \(block) scale")
                    #expect(a.sums[block] == d * Float(q.reduce(0) { $0 + Int32($1) }), "block \(block) sum")
                    #expect((0..<32).allSatisfy { a.values[block * 32 + $0] == q[$0] }, "block \(block) values")
                }
            }
        }
    }
}
