import ModelText

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Rotary position embedding as transformers computes it, all in f32: the inverse frequencies,
/// the angle `position × inv_freq`, and rotation of the pairs `(i, i + d/2)` (`rotate_half`).
package struct RotaryEmbedding: Sendable {
    package let headDim: Int
    package let inverseFrequencies: [Float]

    /// The rotation of `config`'s layers (its global layers when some are local: ``init(localLayersOf:)``).
    package init(config: ModelConfig) {
        self.init(
            headDim: config.headDim, theta: config.ropeTheta, scaling: config.ropeScaling, frequencyFactors: config.ropeFrequencyFactors)
    }

    /// The rotation of a model's sliding-window layers when they have a RoPE base of their own (Gemma 3), else nil.
    package init?(localLayersOf config: ModelConfig) {
        guard let theta = config.localRopeTheta else { return nil }
        self.init(headDim: config.headDim, theta: theta, scaling: nil, frequencyFactors: nil)
    }

    private init(headDim: Int, theta: Double, scaling: RopeScaling?, frequencyFactors: [Float]?) {
        self.headDim = headDim
        let half = headDim / 2
        let base = Float(theta)
        var frequencies = (0..<half).map { i in 1 / powf(base, Float(2 * i) / Float(headDim)) }
        switch scaling {
        case .llama3(let scaling):
            // `_compute_llama3_parameters`: long wavelengths are slowed by `factor`, short ones kept,
            // and the band between is interpolated.
            let factor = Float(scaling.factor)
            let low = Float(scaling.lowFrequencyFactor), high = Float(scaling.highFrequencyFactor)
            let context = Float(scaling.originalMaxPositionEmbeddings)
            let lowWavelength = context / low, highWavelength = context / high
            frequencies = frequencies.map { frequency in
                let wavelength = 2 * Float.pi / frequency
                if wavelength > lowWavelength { return frequency / factor }
                if wavelength < highWavelength { return frequency }
                let smooth = (context / wavelength - low) / (high - low)
                return (1 - smooth) * frequency / factor + smooth * frequency
            }
        case .linear(let factor):
            // `_compute_linear_scaling_rope_parameters`: positions interpolated, so frequencies divided.
            frequencies = frequencies.map { $0 / Float(factor) }
        case nil:
            break
        }
        if let factors = frequencyFactors {
            frequencies = zip(frequencies, factors).map { $0 / $1 }
        }
        inverseFrequencies = frequencies
    }

    /// The cosines and sines for `position`: `headDim` floats, `cos` of each frequency then `sin`.
    /// A forward pass computes them once per token and reuses them in every layer.
    package func table(position: Int, into table: UnsafeMutablePointer<Float>) {
        let half = headDim / 2
        for i in 0..<half {
            let angle = Float(position) * inverseFrequencies[i]
            table[i] = cosf(angle)
            table[half + i] = sinf(angle)
        }
    }

    /// Rotates `heads` consecutive heads of `headDim` floats at `vector` with a ``table(position:into:)``.
    package func apply(_ vector: UnsafeMutablePointer<Float>, heads: Int, table: UnsafePointer<Float>) {
        let half = headDim / 2
        for head in 0..<heads {
            let x = vector + head * headDim
            for i in 0..<half {
                let cos = table[i], sin = table[half + i]
                let a = x[i], b = x[half + i]
                x[i] = a * cos - b * sin
                x[half + i] = b * cos + a * sin
            }
        }
    }
}
