import BuiltinEngine
import EngineCompute
import Foundation
import Testing

/// The matrix kernels against a double-precision reference, on every path: decode (few tokens,
/// widening in the kernel), packed AVX2 and packed AVX-512 (many tokens), fused projections.
@Suite("matrix kernels")
struct MatMulTests {
    static let pool = ThreadPool(threadCount: 2)

    /// A random matrix stored in `format`, and the f32 values it holds.
    struct Matrix {
        var matrix: WeightMatrix
        var values: [Float]
        var storage: UnsafeMutableRawPointer
    }

    static func randomMatrix(rows: Int, columns: Int, format: WeightFormat, seed: UInt64) -> Matrix {
        var random = SeededGenerator(seed: seed)
        let storage = UnsafeMutableRawPointer.allocate(byteCount: rows * columns * format.size, alignment: 64)
        var values: [Float] = []
        for i in 0..<rows * columns {
            let value = Float(Double(random.next() % 2001) / 1000 - 1)
            switch format {
            case .f32:
                storage.storeBytes(of: value, toByteOffset: i * 4, as: Float.self)
                values.append(value)
            case .bf16:
                let bits = UInt16(truncatingIfNeeded: value.bitPattern >> 16)
                storage.storeBytes(of: bits, toByteOffset: i * 2, as: UInt16.self)
                values.append(Float(bitPattern: UInt32(bits) << 16))
            case .f16:
                let half = Float16(value)
                storage.storeBytes(of: half, toByteOffset: i * 2, as: Float16.self)
                values.append(Float(half))
            default:
                preconditionFailure("quantized matrices are made by QuantizedMatMulTests")
            }
        }
        return Matrix(matrix: WeightMatrix(rows: rows, columns: columns, format: format, data: storage), values: values, storage: storage)
    }

    static func randomVector(_ count: Int, seed: UInt64) -> [Float] {
        var random = SeededGenerator(seed: seed)
        return (0..<count).map { _ in Float(Double(random.next() % 2001) / 1000 - 1) }
    }

    /// `start[t][n] + bias[n] + Σₖ x[t][k] · W[n][k]` in double precision.
    static func reference(_ w: Matrix, x: [Float], tokens: Int, bias: [Float]?, start: [Float]) -> [Double] {
        let n = w.matrix.rows, k = w.matrix.columns
        var y = [Double](repeating: 0, count: tokens * n)
        for t in 0..<tokens {
            for row in 0..<n {
                var sum = Double(start[t * n + row]) + Double(bias?[row] ?? 0)
                for i in 0..<k { sum += Double(x[t * k + i]) * Double(w.values[row * k + i]) }
                y[t * n + row] = sum
            }
        }
        return y
    }

    static func expectClose(_ y: [Float], _ reference: [Double], columns: Int, _ label: String) {
        // Each term is at most 1 in magnitude: f32 accumulation of `columns` terms stays well within this.
        let tolerance = Double(columns) * 4e-7
        let worst = zip(y, reference).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(worst < tolerance, "\(label): max |Δ| \(worst)")
    }

    /// Shapes with row counts that are not multiples of the tiles, 8-column tails (not multiples of
    /// 16) and more than one 1024-column block; token counts on both sides of the packed path.
    @Test(arguments: [WeightFormat.bf16, .f16, .f32], [1, 2, 4, 6, 7, 13])
    func matmulMatchesReference(format: WeightFormat, tokens: Int) {
        Self.expectMatmulMatchesReference(format: format, tokens: tokens, instructionSet: .avx2)
    }

    /// The same with the AVX-512 build of the packed kernels, on CPUs that have it (whatever
    /// `MODELD_ENGINE_AVX512` says).
    @Test(.enabled(if: InstructionSet.cpuHasAVX512), arguments: [WeightFormat.bf16, .f16, .f32], [1, 2, 3, 4, 5, 6, 7, 13])
    func avx512MatmulMatchesReference(format: WeightFormat, tokens: Int) {
        Self.expectMatmulMatchesReference(format: format, tokens: tokens, instructionSet: .avx512)
    }

    /// A single token with bf16 weights (decode) sums in one fixed order, the Swift kernel's for f16
    /// and f32: four f32 accumulators over every fourth group of 8 columns, the tail into the first,
    /// their lanes added in order. Decode results stay bit-identical whatever kernel computes them.
    @Test func decodeSumsInTheKernelOrder() {
        for (rows, columns) in [(37, 24), (50, 1096)] {
            let w = Self.randomMatrix(rows: rows, columns: columns, format: .bf16, seed: UInt64(rows + columns))
            defer { w.storage.deallocate() }
            let x = Self.randomVector(columns, seed: 11)
            let bias = Self.randomVector(rows, seed: 13)
            var expected = [Float](repeating: 0, count: rows)
            for row in 0..<rows {
                func group(_ i: Int) -> SIMD8<Float> {
                    SIMD8<Float>(w.values[(row * columns + i)..<(row * columns + i + 8)])
                }
                func activations(_ i: Int) -> SIMD8<Float> { SIMD8<Float>(x[i..<i + 8]) }
                var a = [SIMD8<Float>](repeating: SIMD8<Float>(), count: 4)
                var i = 0
                while i + 32 <= columns {
                    for j in 0..<4 { a[j] = a[j].addingProduct(group(i + 8 * j), activations(i + 8 * j)) }
                    i += 32
                }
                while i < columns {
                    a[0] = a[0].addingProduct(group(i), activations(i))
                    i += 8
                }
                expected[row] = ((a[0] + a[1]) + (a[2] + a[3])).sum() + bias[row]
            }
            for instructionSet in [InstructionSet.avx2, .best] {
                var y = [Float](repeating: .nan, count: rows)
                matmul(w.matrix, x: x, xStride: columns, tokens: 1, y: &y, yStride: rows, bias: bias, pool: Self.pool, instructionSet: instructionSet)
                #expect(y == expected, "\(rows)x\(columns), \(instructionSet)")
            }
        }
    }

    /// Overwriting and accumulating (a residual connection), both with a bias.
    private static func expectMatmulMatchesReference(format: WeightFormat, tokens: Int, instructionSet: InstructionSet) {
        for (rows, columns) in [(37, 24), (50, 1096), (16, 2056)] {
            let w = Self.randomMatrix(rows: rows, columns: columns, format: format, seed: UInt64(rows * columns))
            defer { w.storage.deallocate() }
            let x = Self.randomVector(tokens * columns, seed: 3)
            let bias = Self.randomVector(rows, seed: 5)
            let start = Self.randomVector(tokens * rows, seed: 9)
            let overwritten = Self.reference(w, x: x, tokens: tokens, bias: bias, start: [Float](repeating: 0, count: tokens * rows))
            let accumulated = Self.reference(w, x: x, tokens: tokens, bias: bias, start: start)
            let label = "\(format) \(rows)x\(columns), \(tokens) tokens, \(instructionSet)"
            var y = [Float](repeating: .nan, count: tokens * rows)
            matmul(
                w.matrix, x: x, xStride: columns, tokens: tokens, y: &y, yStride: rows, bias: bias, pool: Self.pool, instructionSet: instructionSet)
            Self.expectClose(y, overwritten, columns: columns, label + ", with bias")
            y = start
            matmul(
                w.matrix, x: x, xStride: columns, tokens: tokens, y: &y, yStride: rows, bias: bias, accumulate: true, pool: Self.pool,
                instructionSet: instructionSet)
            Self.expectClose(y, accumulated, columns: columns, label + ", accumulating")
        }
    }

    /// q, k and v as one job: each output gets its own matrix's rows, with its own bias.
    @Test(arguments: [1, 9])
    func stackedProjectionsMatchSeparateOnes(tokens: Int) {
        let columns = 64
        let shapes = [40, 8, 24]
        let matrices = shapes.enumerated().map { Self.randomMatrix(rows: $1, columns: columns, format: .bf16, seed: UInt64($0 + 1)) }
        defer { matrices.forEach { $0.storage.deallocate() } }
        let x = Self.randomVector(tokens * columns, seed: 11)
        let biases = shapes.enumerated().map { Self.randomVector($1, seed: UInt64(20 + $0)) }
        let outputs = shapes.map { UnsafeMutablePointer<Float>.allocate(capacity: tokens * $0) }
        defer { outputs.forEach { $0.deallocate() } }
        biases.withUnsafeBufferPointers { biasPointers in
            let projections = (0..<3).map { Projection(matrices[$0].matrix, y: outputs[$0], yStride: shapes[$0], bias: biasPointers[$0]) }
            matmul(projections, x: x, xStride: columns, tokens: tokens, pool: Self.pool)
        }
        for i in 0..<3 {
            let expected = Self.reference(matrices[i], x: x, tokens: tokens, bias: biases[i], start: [Float](repeating: 0, count: tokens * shapes[i]))
            Self.expectClose(Array(UnsafeBufferPointer(start: outputs[i], count: tokens * shapes[i])), expected, columns: columns, "projection \(i)")
        }
    }

    /// `silu(gate) * up` computed by each thread right after its rows.
    @Test(arguments: [1, 8])
    func gatedProjectionAppliesSiLU(tokens: Int) {
        let rows = 72, columns = 48
        let gate = Self.randomMatrix(rows: rows, columns: columns, format: .bf16, seed: 31)
        let up = Self.randomMatrix(rows: rows, columns: columns, format: .bf16, seed: 32)
        defer {
            gate.storage.deallocate()
            up.storage.deallocate()
        }
        let x = Self.randomVector(tokens * columns, seed: 33)
        var gateOut = [Float](repeating: 0, count: tokens * rows)
        var upOut = [Float](repeating: 0, count: tokens * rows)
        gateOut.withUnsafeMutableBufferPointer { g in
            upOut.withUnsafeMutableBufferPointer { u in
                gatedMatmul(
                    gate: Projection(gate.matrix, y: g.baseAddress!, yStride: rows),
                    up: Projection(up.matrix, y: u.baseAddress!, yStride: rows),
                    x: x, xStride: columns, tokens: tokens, pool: Self.pool
                )
            }
        }
        let zero = [Float](repeating: 0, count: tokens * rows)
        let g = Self.reference(gate, x: x, tokens: tokens, bias: nil, start: zero)
        let u = Self.reference(up, x: x, tokens: tokens, bias: nil, start: zero)
        let expected = zip(g, u).map { g, u in g / (1 + Foundation.exp(-g)) * u }
        Self.expectClose(gateOut, expected, columns: columns, "silu(gate) * up")
    }

    /// The vectorised `exp` within a few ulp of the C library's over the range activations use.
    @Test func vectorExpIsAccurate() {
        var worst: Float = 0
        var x: Float = -87
        while x < 87 {
            let lanes = VectorOps.exp(SIMD8<Float>((0..<8).map { x + Float($0) * 0.0137 }))
            for lane in 0..<8 {
                let exact = Foundation.exp(Double(x + Float(lane) * 0.0137))
                worst = max(worst, Float(abs(Double(lanes[lane]) - exact) / exact))
            }
            x += 0.113
        }
        #expect(worst < 4 * Float.ulpOfOne, "worst relative error \(worst)")
    }
}

extension Array where Element == [Float] {
    /// Pointers to each array's storage, valid inside `body`.
    fileprivate func withUnsafeBufferPointers<R>(_ body: ([UnsafePointer<Float>]) -> R) -> R {
        let copies = map { array -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: array.count)
            p.initialize(from: array, count: array.count)
            return p
        }
        defer { copies.forEach { $0.deallocate() } }
        return body(copies.map { UnsafePointer($0) })
    }
}
