/// The compute-bound half of the engine's matrix multiply (prefill and large batches), compiled
/// for AVX-512 (`-target-cpu skylake-avx512`): sixteen-lane FMAs and thirty-two vector registers
/// double the arithmetic per instruction of the AVX2 kernels.
///
/// Call it only where Engine's `InstructionSet.cpuHasAVX512` is true (the engine does when its
/// `InstructionSet.best` is `.avx512`): on a CPU without AVX-512 these instructions fault. Its
/// interface is raw pointers so that this module depends on nothing of the engine's.
package struct PackedMatMul {
    /// How the weights are stored; each is widened to f32 while packing.
    package enum Format: Sendable {
        case bf16, f16, f32

        var size: Int { self == .f32 ? 4 : 2 }
    }

    let weights: UnsafeRawPointer
    let format: Format
    let columns: Int
    let x: UnsafePointer<Float>
    let xStride: Int
    let tokens: Int
    let y: UnsafeMutablePointer<Float>
    let yStride: Int
    let bias: UnsafePointer<Float>?
    let accumulate: Bool

    /// Rows per packed tile, and columns per block: 8 × 1024 f32 (32 KB) stay in L1 while every
    /// token group passes, and a block of 128 tokens' activations (512 KB) in L2 while the tiles
    /// pass. Long blocks also amortise the kernel's 24 horizontal sums over more FMAs.
    private static let tile = 8
    private static let block = 1024

    /// `y[t][n] (+)= bias[n] + Σₖ x[t][k] · W[n][k]` for an `[N, columns]` row-major `weights`,
    /// `columns` a multiple of 8.
    package init(
        weights: UnsafeRawPointer, format: Format, columns: Int, x: UnsafePointer<Float>, xStride: Int, tokens: Int,
        y: UnsafeMutablePointer<Float>, yStride: Int, bias: UnsafePointer<Float>?, accumulate: Bool
    ) {
        self.weights = weights
        self.format = format
        self.columns = columns
        self.x = x
        self.xStride = xStride
        self.tokens = tokens
        self.y = y
        self.yStride = yStride
        self.bias = bias
        self.accumulate = accumulate
    }

    /// Floats between packed rows: one cache line more than the block, since rows 4 KB apart
    /// would all fall in the same L1 sets.
    private static func packedWidth(_ columns: Range<Int>) -> Int { columns.count + 16 }

    /// Computes output rows `rows` for every token.
    package func run(rows: Range<Int>) {
        withUnsafeTemporaryAllocation(of: Float.self, capacity: Self.tile * (Self.block + 16)) { buffer in
            let packed = buffer.baseAddress!
            var blockStart = 0
            while blockStart < columns {
                let blockEnd = min(columns, blockStart + Self.block)
                var tileStart = rows.lowerBound
                while tileStart < rows.upperBound {
                    let tileEnd = min(rows.upperBound, tileStart + Self.tile)
                    pack(rows: tileStart..<tileEnd, columns: blockStart..<blockEnd, into: packed)
                    multiply(packed, rows: tileStart..<tileEnd, columns: blockStart..<blockEnd)
                    tileStart = tileEnd
                }
                blockStart = blockEnd
            }
        }
    }

    /// Widens `W[rows, columns]` to f32, row after row, `columns.count` floats apart.
    private func pack(rows: Range<Int>, columns: Range<Int>, into packed: UnsafeMutablePointer<Float>) {
        let target = UnsafeMutableRawPointer(packed)
        let width = Self.packedWidth(columns)
        for row in rows {
            let source = weights + row &* self.columns &* format.size
            let out = target + (row - rows.lowerBound) &* width &* 4 - columns.lowerBound &* 4
            var i = columns.lowerBound
            switch format {
            case .bf16:
                while i + 16 <= columns.upperBound {
                    let half = source.loadUnaligned(fromByteOffset: i &* 2, as: SIMD16<UInt16>.self)
                    out.storeBytes(of: SIMD16<UInt32>(truncatingIfNeeded: half) &<< 16, toByteOffset: i &* 4, as: SIMD16<UInt32>.self)
                    i &+= 16
                }
                while i < columns.upperBound {
                    let bits = UInt32(source.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)) << 16
                    out.storeBytes(of: bits, toByteOffset: i &* 4, as: UInt32.self)
                    i &+= 1
                }
            case .f16:
                while i + 16 <= columns.upperBound {
                    let half = source.loadUnaligned(fromByteOffset: i &* 2, as: SIMD16<Float16>.self)
                    out.storeBytes(of: SIMD16<Float>(half), toByteOffset: i &* 4, as: SIMD16<Float>.self)
                    i &+= 16
                }
                while i < columns.upperBound {
                    let value = Float(source.loadUnaligned(fromByteOffset: i &* 2, as: Float16.self))
                    out.storeBytes(of: value, toByteOffset: i &* 4, as: Float.self)
                    i &+= 1
                }
            case .f32:
                (out + i &* 4).copyMemory(from: source + i &* 4, byteCount: (columns.upperBound - i) &* 4)
            }
        }
    }

    /// Every token against the packed tile: eight rows by three tokens at a time, then what is left.
    private func multiply(_ packed: UnsafeMutablePointer<Float>, rows: Range<Int>, columns: Range<Int>) {
        let width = Self.packedWidth(columns)
        // Packed row `r` of this tile, indexed by absolute column.
        let base = UnsafeRawPointer(packed) - rows.lowerBound &* width &* 4 - columns.lowerBound &* 4
        var token = 0
        while token + 3 <= tokens {
            var row = rows.lowerBound
            while row + 8 <= rows.upperBound {
                kernel8x3(base, stride: width, row: row, token: token, columns: columns)
                row += 8
            }
            while row < rows.upperBound {
                for t in token..<token + 3 { kernel1x1(base, stride: width, row: row, token: t, columns: columns) }
                row += 1
            }
            token += 3
        }
        while token < tokens {
            for row in rows { kernel1x1(base, stride: width, row: row, token: token, columns: columns) }
            token += 1
        }
    }

    /// Writes one dot product: the first block of columns sets `y` (with the bias), or adds to it
    /// when accumulating; later blocks add to it.
    @inline(__always)
    private func store(_ value: Float, row: Int, token: Int, first: Bool) {
        let index = token &* yStride &+ row
        if !first {
            y[index] += value
        } else if accumulate {
            y[index] += value + (bias?[row] ?? 0)
        } else {
            y[index] = value + (bias?[row] ?? 0)
        }
    }

    /// Eight packed rows against three tokens: 24 accumulators, three activation registers and one
    /// weight register out of 32; each weight vector feeds three FMAs.
    @inline(__always)
    private func kernel8x3(_ base: UnsafeRawPointer, stride: Int, row: Int, token: Int, columns: Range<Int>) {
        let rowBytes = stride &* 4
        let w0 = base + row &* rowBytes
        let x0 = UnsafeRawPointer(x + token &* xStride), x1 = x0 + xStride &* 4, x2 = x1 + xStride &* 4
        var a00 = SIMD16<Float>(), a01 = SIMD16<Float>(), a02 = SIMD16<Float>()
        var a10 = SIMD16<Float>(), a11 = SIMD16<Float>(), a12 = SIMD16<Float>()
        var a20 = SIMD16<Float>(), a21 = SIMD16<Float>(), a22 = SIMD16<Float>()
        var a30 = SIMD16<Float>(), a31 = SIMD16<Float>(), a32 = SIMD16<Float>()
        var a40 = SIMD16<Float>(), a41 = SIMD16<Float>(), a42 = SIMD16<Float>()
        var a50 = SIMD16<Float>(), a51 = SIMD16<Float>(), a52 = SIMD16<Float>()
        var a60 = SIMD16<Float>(), a61 = SIMD16<Float>(), a62 = SIMD16<Float>()
        var a70 = SIMD16<Float>(), a71 = SIMD16<Float>(), a72 = SIMD16<Float>()
        var i = columns.lowerBound
        while i + 16 <= columns.upperBound {
            let at = i &* 4
            let p0 = x0.loadUnaligned(fromByteOffset: at, as: SIMD16<Float>.self)
            let p1 = x1.loadUnaligned(fromByteOffset: at, as: SIMD16<Float>.self)
            let p2 = x2.loadUnaligned(fromByteOffset: at, as: SIMD16<Float>.self)
            let u0 = w0.loadUnaligned(fromByteOffset: at, as: SIMD16<Float>.self)
            a00 = a00.addingProduct(u0, p0)
            a01 = a01.addingProduct(u0, p1)
            a02 = a02.addingProduct(u0, p2)
            let u1 = w0.loadUnaligned(fromByteOffset: at &+ 1 &* rowBytes, as: SIMD16<Float>.self)
            a10 = a10.addingProduct(u1, p0)
            a11 = a11.addingProduct(u1, p1)
            a12 = a12.addingProduct(u1, p2)
            let u2 = w0.loadUnaligned(fromByteOffset: at &+ 2 &* rowBytes, as: SIMD16<Float>.self)
            a20 = a20.addingProduct(u2, p0)
            a21 = a21.addingProduct(u2, p1)
            a22 = a22.addingProduct(u2, p2)
            let u3 = w0.loadUnaligned(fromByteOffset: at &+ 3 &* rowBytes, as: SIMD16<Float>.self)
            a30 = a30.addingProduct(u3, p0)
            a31 = a31.addingProduct(u3, p1)
            a32 = a32.addingProduct(u3, p2)
            let u4 = w0.loadUnaligned(fromByteOffset: at &+ 4 &* rowBytes, as: SIMD16<Float>.self)
            a40 = a40.addingProduct(u4, p0)
            a41 = a41.addingProduct(u4, p1)
            a42 = a42.addingProduct(u4, p2)
            let u5 = w0.loadUnaligned(fromByteOffset: at &+ 5 &* rowBytes, as: SIMD16<Float>.self)
            a50 = a50.addingProduct(u5, p0)
            a51 = a51.addingProduct(u5, p1)
            a52 = a52.addingProduct(u5, p2)
            let u6 = w0.loadUnaligned(fromByteOffset: at &+ 6 &* rowBytes, as: SIMD16<Float>.self)
            a60 = a60.addingProduct(u6, p0)
            a61 = a61.addingProduct(u6, p1)
            a62 = a62.addingProduct(u6, p2)
            let u7 = w0.loadUnaligned(fromByteOffset: at &+ 7 &* rowBytes, as: SIMD16<Float>.self)
            a70 = a70.addingProduct(u7, p0)
            a71 = a71.addingProduct(u7, p1)
            a72 = a72.addingProduct(u7, p2)
            i &+= 16
        }
        let first = columns.lowerBound == 0
        let tail = i < columns.upperBound
        /// Stores row `r`'s three sums, adding the 8-column tail where `columns` is a multiple of 8
        /// but not of 16.
        func finish(_ r: Int, _ s0: Float, _ s1: Float, _ s2: Float) {
            var s0 = s0, s1 = s1, s2 = s2
            if tail {
                let at = i &* 4
                let u = (w0 + r &* rowBytes).loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self)
                s0 += (u * x0.loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self)).sum()
                s1 += (u * x1.loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self)).sum()
                s2 += (u * x2.loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self)).sum()
            }
            store(s0, row: row + r, token: token, first: first)
            store(s1, row: row + r, token: token + 1, first: first)
            store(s2, row: row + r, token: token + 2, first: first)
        }
        finish(0, a00.sum(), a01.sum(), a02.sum())
        finish(1, a10.sum(), a11.sum(), a12.sum())
        finish(2, a20.sum(), a21.sum(), a22.sum())
        finish(3, a30.sum(), a31.sum(), a32.sum())
        finish(4, a40.sum(), a41.sum(), a42.sum())
        finish(5, a50.sum(), a51.sum(), a52.sum())
        finish(6, a60.sum(), a61.sum(), a62.sum())
        finish(7, a70.sum(), a71.sum(), a72.sum())
    }

    @inline(__always)
    private func kernel1x1(_ base: UnsafeRawPointer, stride: Int, row: Int, token: Int, columns: Range<Int>) {
        let w = base + row &* stride &* 4
        let p = UnsafeRawPointer(x + token &* xStride)
        var a = SIMD16<Float>()
        var i = columns.lowerBound
        while i + 16 <= columns.upperBound {
            let at = i &* 4
            a = a.addingProduct(
                w.loadUnaligned(fromByteOffset: at, as: SIMD16<Float>.self), p.loadUnaligned(fromByteOffset: at, as: SIMD16<Float>.self))
            i &+= 16
        }
        var sum = a.sum()
        if i < columns.upperBound {
            let at = i &* 4
            sum += (w.loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self) * p.loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self)).sum()
        }
        store(sum, row: row, token: token, first: columns.lowerBound == 0)
    }
}
