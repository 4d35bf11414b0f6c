import EngineCompute
import Foundation
import ModelText
import Testing

/// The bf16 prefill path (``AMXMatMul``): on AMX-BF16 tiles where the CPU and kernel allow them, with
/// `vdpbf16ps` where the CPU has AVX512_BF16; shown as skipped on machines with neither.
@Suite("bf16 prefill matrix multiply (AMX-BF16, AVX512_BF16)", .enabled(if: InstructionSet.cpuHasAMX || InstructionSet.cpuHasAVX512BF16))
struct AMXMatMulTests {
    static let pool = ThreadPool(threadCount: 2)

    /// The kernels this machine can run.
    static let kernels: [AMXMatMul.Kernel] =
        (InstructionSet.cpuHasAMX ? [.tiles] : []) + (InstructionSet.cpuHasAVX512BF16 ? [.dot] : [])

    /// The instruction sets that use them, and the precision of each.
    static let instructionSets: [InstructionSet] =
        (InstructionSet.cpuHasAMX ? [.amx, .amxBF16] : []) + (InstructionSet.cpuHasAVX512BF16 ? [.avx512BF16, .avx512BF16Rounded] : [])

    static func precision(_ instructionSet: InstructionSet) -> AMXMatMul.Precision {
        [.amx, .avx512BF16].contains(instructionSet) ? .split : .rounded
    }

    /// Rows not a multiple of 16 (one or two strips of 16 and a tail), columns not a multiple of
    /// 32 (8- and 24-column tails), more columns than one tile row, and more than one of
    /// BF16DotMatMul.c's column blocks (2048) with a tail in the last.
    static let shapes = [(37, 40), (50, 520), (17, 328), (32, 64), (9, 2120)]

    /// `start + bias + Σₖ x·w` in double precision, and the sum of the magnitudes of its terms,
    /// the scale its rounding errors are relative to.
    static func reference(
        _ w: MatMulTests.Matrix, x: [Float], tokens: Int, bias: [Float], start: [Float]
    ) -> (values: [Double], scales: [Double]) {
        let n = w.matrix.rows, k = w.matrix.columns
        var values = [Double](repeating: 0, count: tokens * n), scales = values
        for t in 0..<tokens {
            for row in 0..<n {
                var sum = Double(start[t * n + row]) + Double(bias[row])
                var scale = abs(Double(start[t * n + row])) + abs(Double(bias[row]))
                for i in 0..<k {
                    let product = Double(x[t * k + i]) * Double(w.values[row * k + i])
                    sum += product
                    scale += abs(product)
                }
                values[t * n + row] = sum
                scales[t * n + row] = scale
            }
        }
        return (values, scales)
    }

    /// `value` rounded to bf16, to nearest even.
    static func bf16(_ value: Float) -> Float {
        let bits = value.bitPattern
        let rounded = bits &+ 0x7fff &+ ((bits >> 16) & 1)
        return Float(bitPattern: rounded & 0xffff_0000)
    }

    /// What the tiles multiply for `value`: its bf16 rounding, plus with ``AMXMatMul/Precision/split``
    /// the rounded remainder (`value - high` is exact in f32).
    static func parts(_ value: Float, _ precision: AMXMatMul.Precision) -> Float {
        let high = bf16(value)
        return precision == .rounded ? high : high + bf16(value - high)
    }

    /// How far from the unrounded activations' products the tiles may be, relative to the scale:
    /// a bf16 rounding is within 2⁻⁹ of the value, two parts within 2⁻¹⁸; plus f32 sums.
    static func representationBound(_ precision: AMXMatMul.Precision) -> Double {
        (precision == .rounded ? 0x1p-9 : 0x1p-18) + 1e-5
    }

    /// The largest error relative to each output's scale.
    static func worstRelative(_ y: [Float], _ reference: (values: [Double], scales: [Double])) -> Double {
        zip(y, zip(reference.values, reference.scales)).map { abs(Double($0) - $1.0) / $1.1 }.max() ?? 0
    }

    /// Every token count from 1 to 40 (one, two and three 16-token tiles with every tail), both
    /// precisions and every kernel, called directly on one thread over all rows and over rows split at a strip
    /// boundary, overwriting with a bias and accumulating: within 1e-5 of the products of the
    /// activations' bf16 parts, and within their rounding (2⁻⁹ or 2⁻¹⁸ of each term) of the
    /// unrounded ones.
    @Test(arguments: 1...40, [AMXMatMul.Precision.rounded, .split])
    func gemmMatchesReferences(tokens: Int, precision: AMXMatMul.Precision) {
        for kernel in Self.kernels {
            gemmMatchesReferences(tokens: tokens, precision: precision, kernel: kernel)
        }
    }

    func gemmMatchesReferences(tokens: Int, precision: AMXMatMul.Precision, kernel: AMXMatMul.Kernel) {
        for (rows, columns) in Self.shapes {
            let w = MatMulTests.randomMatrix(rows: rows, columns: columns, format: .bf16, seed: UInt64(rows * columns + tokens))
            defer { w.storage.deallocate() }
            let x = MatMulTests.randomVector(tokens * columns, seed: UInt64(tokens))
            let bias = MatMulTests.randomVector(rows, seed: 5)
            let start = MatMulTests.randomVector(tokens * rows, seed: 9)
            let zero = [Float](repeating: 0, count: tokens * rows)
            let rounded = x.map { Self.parts($0, precision) }
            for (accumulate, initial) in [(false, zero), (true, start)] {
                let exact = Self.reference(w, x: rounded, tokens: tokens, bias: bias, start: initial)
                let unrounded = Self.reference(w, x: x, tokens: tokens, bias: bias, start: initial)
                for split in [0, 16] where split < rows {
                    var y = accumulate ? start : [Float](repeating: .nan, count: tokens * rows)
                    AMXMatMul.withActivations(
                        x: x, xStride: columns, tokens: tokens, columns: columns, precision: precision, kernel: kernel, pool: Self.pool
                    ) { activations in
                        bias.withUnsafeBufferPointer { bias in
                            for range in [0..<split, split..<rows] where !range.isEmpty {
                                AMXMatMul.multiply(
                                    w.matrix, rows: range, activations: activations, tokens: tokens, y: &y, yStride: rows,
                                    bias: bias.baseAddress, accumulate: accumulate
                                )
                            }
                        }
                    }
                    let label = "\(kernel) \(precision) \(rows)x\(columns), \(tokens) tokens, split at \(split), accumulate \(accumulate)"
                    let againstRounded = Self.worstRelative(y, exact)
                    let againstUnrounded = Self.worstRelative(y, unrounded)
                    #expect(againstRounded < 1e-5, "\(label): \(againstRounded) relative to the bf16 parts' products")
                    #expect(
                        againstUnrounded < Self.representationBound(precision), "\(label): \(againstUnrounded) relative to the unrounded products")
                }
            }
        }
    }

    /// Through ``matmul(_:x:xStride:tokens:y:yStride:bias:accumulate:pool:instructionSet:)``: rows
    /// split between the pool's threads; fewer than ``AMXMatMul/minimumTokens`` tokens, and f32
    /// weights, stay on the f32 kernels, bit for bit.
    @Test(arguments: [1, 5, 6, 23, 40], instructionSets)
    func matmulUsesTilesForManyBF16Tokens(tokens: Int, instructionSet: InstructionSet) {
        let precision = Self.precision(instructionSet)
        let rows = 150, columns = 1096
        let x = MatMulTests.randomVector(tokens * columns, seed: 41)
        let bias = MatMulTests.randomVector(rows, seed: 42)
        let zero = [Float](repeating: 0, count: tokens * rows)
        for format in [WeightFormat.bf16, .f32] {
            let w = MatMulTests.randomMatrix(rows: rows, columns: columns, format: format, seed: 43)
            defer { w.storage.deallocate() }
            var amx = [Float](repeating: .nan, count: tokens * rows), avx512 = amx
            matmul(
                w.matrix, x: x, xStride: columns, tokens: tokens, y: &amx, yStride: rows, bias: bias, pool: Self.pool, instructionSet: instructionSet)
            matmul(w.matrix, x: x, xStride: columns, tokens: tokens, y: &avx512, yStride: rows, bias: bias, pool: Self.pool, instructionSet: .avx512)
            if format == .bf16 && tokens >= AMXMatMul.minimumTokens {
                let exact = Self.reference(w, x: x.map { Self.parts($0, precision) }, tokens: tokens, bias: bias, start: zero)
                let worst = Self.worstRelative(amx, exact)
                #expect(worst < 1e-5, "\(tokens) tokens: \(worst) relative to the bf16 parts' products")
                #expect(amx != avx512, "\(tokens) tokens of bf16 weights should run on the tiles")
            } else {
                #expect(amx == avx512, "\(format), \(tokens) tokens should keep the f32 kernels")
            }
        }
    }

    /// A forward pass of each fixture model with its weights rounded to bf16: the logits of the
    /// prompt (39 tokens, so every projection runs on the tiles) stay close to the AVX-512 path's,
    /// which multiplies the same bf16 weights by f32 activations. Measured max |Δ| over every
    /// position (logits up to 1.8), qwen2 / qwen3 / llama3: two parts 1.5e-4 / 1.0e-4 / 4.1e-4,
    /// rounded 7.4e-3 / 7.5e-3 / 1.3e-2. For scale, the AVX2 build against the AVX-512 one (f32
    /// sums in another order) differs by 2.5e-6 / 2.1e-5 / 2.0e-4.
    @Test(arguments: Fixtures.names, instructionSets)
    func bf16ModelLogitsStayClose(name: String, instructionSet: InstructionSet) throws {
        let expected = try Fixtures.expected(name)
        let directory = try Fixtures.directory(name)
        let config = try ModelConfig(directory: directory)
        let generationConfig = try GenerationConfig(directory: directory)
        let weights = BF16Copy(try Checkpoint(directory: directory))
        func logits(_ instructionSet: InstructionSet) throws -> [[Float]] {
            let model = try TransformerModel(
                config: config, generationConfig: generationConfig, weights: weights, pool: Self.pool, instructionSet: instructionSet
            )
            return try model.forward([ForwardSegment(cache: model.makeCache(), tokens: expected.prompt_ids, logits: .all)])[0]
        }
        let amx = try logits(instructionSet), avx512 = try logits(.avx512)
        #expect(expected.prompt_ids.count >= AMXMatMul.minimumTokens)
        let worst = zip(amx, avx512).map { maxAbsDifference($0, $1) }.max() ?? .infinity
        let largest = avx512.joined().map(abs).max() ?? 0
        print("\(name): bf16 weights, \(instructionSet) vs avx512 logits: max |Δ| \(worst), largest |logit| \(largest)")
        #expect(worst > 0, "\(name): the AMX path should have run")
        #expect(worst < (Self.precision(instructionSet) == .split ? 1e-3 : 3e-2), "\(name), \(instructionSet): max |Δ| \(worst)")
    }
}

/// A checkpoint's tensors with every f32 and f16 tensor rounded to bf16 (to nearest even): a bf16
/// copy of a fixture model.
final class BF16Copy: WeightSource, @unchecked Sendable {
    private let source: any WeightSource
    private let lock = NSLock()
    private var copies: [String: TensorView] = [:]
    private var storage: [UnsafeMutableRawPointer] = []

    init(_ source: any WeightSource) {
        self.source = source
    }

    deinit {
        storage.forEach { $0.deallocate() }
    }

    func tensor(named name: String) -> TensorView? {
        lock.lock()
        defer { lock.unlock() }
        if let copy = copies[name] { return copy }
        guard let tensor = source.tensor(named: name) else { return nil }
        guard tensor.dtype == .f32 || tensor.dtype == .f16 else { return tensor }
        let data = UnsafeMutableRawPointer.allocate(byteCount: tensor.count * 2, alignment: 64)
        storage.append(data)
        for i in 0..<tensor.count {
            let bits = AMXMatMulTests.bf16(tensor.float(at: i)).bitPattern
            data.storeBytes(of: UInt16(truncatingIfNeeded: bits >> 16), toByteOffset: i * 2, as: UInt16.self)
        }
        let copy = TensorView(name: tensor.name, dtype: .bf16, shape: tensor.shape, data: data)
        copies[name] = copy
        return copy
    }
}
