import Foundation

/// The tensors of a GGUF model under transformers' names, so the model is built as from a checkpoint
/// (docs/design/gguf.md, Tensors). F32, F16 and BF16 tensors are plain ``TensorView``s; quantized ones carry
/// their ``GGMLType``. A mixture-of-experts layer's experts are one 3-D tensor per projection
/// (`ffn_gate_exps`, `ffn_up_exps`, `ffn_down_exps`); expert `E`'s matrix is its slice `E`, in place. For the `llama` architecture the rows of `attn_q` and `attn_k` are put back in
/// transformers' order (copies: the mapping is read-only).
package final class GGUFWeights: WeightSource, @unchecked Sendable {
    package let file: GGUFFile
    private let config: ModelConfig
    /// The reordered q and k matrices, by transformers' name.
    private let reordered: [String: UnsafeMutableRawBufferPointer]

    /// - Throws: ``ModelError`` `invalidTensor` naming a tensor of an unsupported type or a malformed q/k matrix.
    package init(file: GGUFFile, config: ModelConfig) throws {
        self.file = file
        self.config = config
        for tensor in file.tensors where !tensor.type.isSupported {
            let supported = GGMLType.supported.map(\.description).joined(separator: ", ")
            throw ModelError(
                .invalidTensor,
                "\(file.url.lastPathComponent): tensor \(tensor.name) is \(tensor.type), which the built-in engine does not support (supported: \(supported))"
            )
        }
        var reordered: [String: UnsafeMutableRawBufferPointer] = [:]
        if config.architecture == .llama {
            do {
                for layer in 0..<config.layerCount {
                    for (name, heads) in [("q", config.headCount), ("k", config.kvHeadCount)] {
                        let key = "model.layers.\(layer).self_attn.\(name)_proj.weight"
                        guard let info = file.tensorInfo(named: "blk.\(layer).attn_\(name).weight") else { continue }
                        reordered[key] = try Self.unpermute(info, heads: heads, in: file)
                    }
                }
            } catch {
                reordered.values.forEach { $0.deallocate() }
                throw error
            }
        }
        self.reordered = reordered
    }

    deinit {
        reordered.values.forEach { $0.deallocate() }
    }

    /// transformers' name of each GGUF tensor name part.
    private static let layerNames: [String: String] = [
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.o_proj.weight": "attn_output.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
        "mlp.gate.weight": "ffn_gate_inp.weight",
        // Phi-3's fused matrices.
        "self_attn.qkv_proj.weight": "attn_qkv.weight", "mlp.gate_up_proj.weight": "ffn_up.weight",
        // Gemma 3's norms around both blocks (its `post_attention_layernorm` follows attention, unlike the others').
        "pre_feedforward_layernorm.weight": "ffn_norm.weight", "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
    ]

    /// The 3-D GGUF tensor holding an expert's projection, and the expert's index in it, for a transformers name
    /// `model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight`; nil for any other name.
    package static func expertSlice(_ name: String) -> (ggufName: String, expert: Int)? {
        let parts = name.split(separator: ".").map(String.init)
        guard parts.count == 8, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), parts[3] == "mlp",
            parts[4] == "experts", let expert = Int(parts[5]), ["gate_proj", "up_proj", "down_proj"].contains(parts[6]), parts[7] == "weight"
        else { return nil }
        return ("blk.\(layer).ffn_\(parts[6].dropLast(5))_exps.weight", expert)
    }

    /// The GGUF name of a transformers tensor name, or nil.
    package static func ggufName(_ name: String) -> String? {
        switch name {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "lm_head.weight": return "output.weight"
        case "model.norm.weight": return "output_norm.weight"
        default:
            let parts = name.split(separator: ".", maxSplits: 3).map(String.init)
            guard parts.count == 4, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]),
                let tail = layerNames[parts[3]]
            else { return nil }
            return "blk.\(layer).\(tail)"
        }
    }

    package func tensor(named name: String) -> TensorView? {
        if let slice = Self.expertSlice(name) {
            let expert = slice.expert
            guard let info = file.tensorInfo(named: slice.ggufName), info.shape.count == 3, expert < info.shape[0] else { return nil }
            let sliceBytes = info.byteCount / info.shape[0]
            return view(name, type: info.type, shape: Array(info.shape.dropFirst()), data: file.data(of: info).baseAddress! + expert * sliceBytes)
        }
        guard var ggufName = Self.ggufName(name) else { return nil }
        if config.hasSandwichNorms, name.hasSuffix(".post_attention_layernorm.weight") {
            ggufName = ggufName.replacingOccurrences(of: "ffn_norm", with: "post_attention_norm")
        }
        guard let info = file.tensorInfo(named: ggufName) else { return nil }
        let data = reordered[name].map { UnsafeRawPointer($0.baseAddress!) } ?? file.data(of: info).baseAddress!
        return view(name, type: info.type, shape: info.shape, data: data)
    }

    private func view(_ name: String, type: GGMLType, shape: [Int], data: UnsafeRawPointer) -> TensorView {
        switch type {
        case .f32: TensorView(name: name, dtype: .f32, shape: shape, data: data)
        case .f16: TensorView(name: name, dtype: .f16, shape: shape, data: data)
        case .bf16: TensorView(name: name, dtype: .bf16, shape: shape, data: data)
        default: TensorView(name: name, dtype: .u8, shape: shape, data: data, blockType: type)
        }
    }

    /// A copy of a llama q or k matrix with each head's rows back in transformers' order: the stored row
    /// `2i + s` of a head of `d` rows is transformers' row `s·d/2 + i`.
    private static func unpermute(_ info: GGUFFile.TensorInfo, heads: Int, in file: GGUFFile) throws -> UnsafeMutableRawBufferPointer {
        let rows = info.shape.count == 2 ? info.shape[0] : 0
        guard rows > 0, rows % (2 * heads) == 0, let rowBytes = info.type.rowBytes(info.dimensions[0]) else {
            throw ModelError(
                .invalidTensor, "\(file.url.lastPathComponent): \(info.name) has shape \(info.shape), not \(heads) heads of an even size")
        }
        let source = file.data(of: info)
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: source.count, alignment: 64)
        let headRows = rows / heads, half = headRows / 2
        for head in 0..<heads {
            for s in 0..<2 {
                for i in 0..<half {
                    let from = head * headRows + 2 * i + s, to = head * headRows + s * half + i
                    copy[(to * rowBytes)..<((to + 1) * rowBytes)].copyBytes(from: source[(from * rowBytes)..<((from + 1) * rowBytes)])
                }
            }
        }
        return copy
    }
}
