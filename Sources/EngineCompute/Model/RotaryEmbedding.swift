import ModelText

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Rotary position embedding as transformers computes it, all in f32: the inverse frequencies,
/// the angle `position × inv_freq`, and rotation of the pairs `(i, i + r/2)` (`rotate_half`) of each head's
/// first `r` = ``rotaryDimensions`` values; the rest of the head passes through (partial rotary).
package struct RotaryEmbedding: Sendable {
    package let headDim: Int
    /// The rotated leading dimensions of each head.
    package let rotaryDimensions: Int
    package let inverseFrequencies: [Float]
    /// Longrope's frequencies for a sequence longer than ``longAfter`` positions; nil without longrope.
    package let longInverseFrequencies: [Float]?
    /// The length up to which a sequence rotates with ``inverseFrequencies`` (`original_max_position_embeddings`).
    package let longAfter: Int
    /// What cosines and sines are multiplied by (longrope's attention factor; 1 otherwise).
    package let scale: Float

    /// The rotation of `config`'s layers (its global layers when some are local: ``init(localLayersOf:)``).
    package init(config: ModelConfig) {
        self.init(
            headDim: config.headDim, rotaryDimensions: config.rotaryDimensions, theta: config.ropeTheta, scaling: config.ropeScaling,
            frequencyFactors: config.ropeFrequencyFactors)
    }

    /// The rotation of a model's sliding-window layers when they have a RoPE base of their own (Gemma 3), else nil.
    package init?(localLayersOf config: ModelConfig) {
        guard let theta = config.localRopeTheta else { return nil }
        self.init(headDim: config.headDim, rotaryDimensions: config.rotaryDimensions, theta: theta, scaling: nil, frequencyFactors: nil)
    }

    private init(headDim: Int, rotaryDimensions: Int, theta: Double, scaling: RopeScaling?, frequencyFactors: [Float]?) {
        self.headDim = headDim
        self.rotaryDimensions = rotaryDimensions
        let half = rotaryDimensions / 2
        let base = Float(theta)
        var frequencies = (0..<half).map { i in 1 / powf(base, Float(2 * i) / Float(rotaryDimensions)) }
        var long: [Float]?
        var longAfter = Int.max
        var scale: Float = 1
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
        case .longrope(let scaling):
            // `_compute_longrope_parameters`: `1 / (ext_factors · base^(2i/r))`, in f32 as torch does.
            let powers = (0..<half).map { i in powf(base, Float(2 * i) / Float(rotaryDimensions)) }
            frequencies = zip(scaling.shortFactors, powers).map { 1 / (Float($0) * $1) }
            long = zip(scaling.longFactors, powers).map { 1 / (Float($0) * $1) }
            longAfter = scaling.originalMaxPositionEmbeddings
            scale = Float(scaling.attentionFactor)
        case nil:
            break
        }
        if let factors = frequencyFactors {
            frequencies = zip(frequencies, factors).map { $0 / $1 }
        }
        inverseFrequencies = frequencies
        longInverseFrequencies = long
        self.longAfter = longAfter
        self.scale = scale
    }

    /// Whether a sequence of `length` positions rotates every position with the long frequencies.
    package func usesLongFrequencies(length: Int) -> Bool { longInverseFrequencies != nil && length > longAfter }

    /// The cosines and sines for `position`: ``rotaryDimensions`` floats, `cos` of each frequency then `sin`
    /// (with `long`, of longrope's long frequencies). A forward pass computes them once per token and reuses them
    /// in every layer.
    package func table(position: Int, long: Bool = false, into table: UnsafeMutablePointer<Float>) {
        let half = rotaryDimensions / 2
        let frequencies = long ? longInverseFrequencies ?? inverseFrequencies : inverseFrequencies
        for i in 0..<half {
            let angle = Float(position) * frequencies[i]
            table[i] = cosf(angle) * scale
            table[half + i] = sinf(angle) * scale
        }
    }

    /// Rotates `heads` consecutive heads of `headDim` floats at `vector` with a ``table(position:long:into:)``.
    package func apply(_ vector: UnsafeMutablePointer<Float>, heads: Int, table: UnsafePointer<Float>) {
        let half = rotaryDimensions / 2
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
