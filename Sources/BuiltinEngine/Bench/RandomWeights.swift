import Foundation
import ModelText

/// Random bf16 weights for a ``ModelConfig``, built in memory: benchmarks of a model's exact
/// shape (e.g. ``ModelConfig/qwen25_0_5B``) without downloading it.
package final class RandomWeights: WeightSource, @unchecked Sendable {
    package let config: ModelConfig
    private let lock = NSLock()
    private var tensors: [String: TensorView] = [:]
    private var buffers: [UnsafeMutableRawPointer] = []
    private let seed: UInt64

    package init(config: ModelConfig, seed: UInt64 = 42) {
        self.config = config
        self.seed = seed
    }

    deinit {
        buffers.forEach { $0.deallocate() }
    }

    package func tensor(named name: String) -> TensorView? {
        lock.lock()
        defer { lock.unlock() }
        if let tensor = tensors[name] { return tensor }
        guard let shape = shape(of: name) else { return nil }
        let count = shape.reduce(1, *)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: count * 2, alignment: 64)
        buffers.append(buffer)
        let words = buffer.bindMemory(to: UInt16.self, capacity: count)
        if name.hasSuffix("norm.weight") {
            // 1.0 in bf16: norms that keep activations at a realistic scale.
            words.update(repeating: 0x3F80, count: count)
        } else {
            // Uniform in about ±0.03: bf16 exponent 0x3Cxx covers [2^-6, 2^-5).
            var state = seed ^ UInt64(truncatingIfNeeded: name.hashValue)
            for i in 0..<count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                let bits = UInt16(truncatingIfNeeded: state >> 48)
                words[i] = (bits & 0x8000) | 0x3C80 | (bits & 0x7F)
            }
        }
        let tensor = TensorView(name: name, dtype: .bf16, shape: shape, data: UnsafeRawPointer(buffer))
        tensors[name] = tensor
        return tensor
    }

    /// The shape transformers gives `name` in this architecture, or nil for a name it does not have.
    private func shape(of name: String) -> [Int]? {
        let c = config
        let q = c.headCount * c.headDim, kv = c.kvHeadCount * c.headDim
        switch name {
        case "model.embed_tokens.weight": return [c.vocabSize, c.hiddenSize]
        case "lm_head.weight": return c.tieWordEmbeddings ? nil : [c.vocabSize, c.hiddenSize]
        case "model.norm.weight": return [c.hiddenSize]
        default: break
        }
        guard name.hasPrefix("model.layers.") else { return nil }
        let parts = name.split(separator: ".")
        guard parts.count >= 5, let layer = Int(parts[2]), layer < c.layerCount else { return nil }
        switch parts[3...].joined(separator: ".") {
        case "input_layernorm.weight", "post_attention_layernorm.weight": return [c.hiddenSize]
        case "pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight": return c.hasSandwichNorms ? [c.hiddenSize] : nil
        case "self_attn.q_proj.weight": return c.hasFusedProjections ? nil : [q, c.hiddenSize]
        case "self_attn.k_proj.weight", "self_attn.v_proj.weight": return c.hasFusedProjections ? nil : [kv, c.hiddenSize]
        case "self_attn.qkv_proj.weight": return c.hasFusedProjections ? [q + 2 * kv, c.hiddenSize] : nil
        case "self_attn.o_proj.weight": return [c.hiddenSize, q]
        case "self_attn.q_proj.bias": return c.attentionBias ? [q] : nil
        case "self_attn.k_proj.bias", "self_attn.v_proj.bias": return c.attentionBias ? [kv] : nil
        case "self_attn.o_proj.bias": return c.attentionBias && c.architecture != .qwen2 ? [c.hiddenSize] : nil
        case "self_attn.q_norm.weight", "self_attn.k_norm.weight": return c.hasQKNorm ? [c.headDim] : nil
        case "mlp.gate_proj.weight", "mlp.up_proj.weight": return c.hasFusedProjections ? nil : [c.intermediateSize, c.hiddenSize]
        case "mlp.gate_up_proj.weight": return c.hasFusedProjections ? [2 * c.intermediateSize, c.hiddenSize] : nil
        case "mlp.down_proj.weight": return [c.hiddenSize, c.intermediateSize]
        default: return nil
        }
    }
}
