import BuiltinEngine
import EngineCompute
import Foundation
import ModelText
import Testing

/// The Qwen3-MoE fixture (`scripts/make-fixtures.py`: 16 experts, 4 per token, layer 1 dense) against
/// transformers, beyond what ``ForwardTests`` checks of every fixture.
@Suite("mixture of experts (Qwen3-MoE)")
struct MixtureOfExpertsTests {
    static let name = "qwen3moe-tiny"

    /// What the fixture script records for this model besides ``Expected``.
    struct Recorded: Decodable {
        struct Prompt: Decodable {
            var prompt_ids: [Int32]
            var greedy_ids: [Int32]
        }
        var prompt_ids: [Int32]
        var greedy_ids: [Int32]
        var extra_prompts: [Prompt]
        var greedy_ids_flipped_norm_topk_prob: [Int32]
    }

    static func recorded() throws -> Recorded {
        try JSONDecoder().decode(Recorded.self, from: Data(contentsOf: Fixtures.directory(name).appending(path: "expected.json")))
    }

    static func greedy(_ model: TransformerModel, _ prompt: [Int32], steps: Int) throws -> [Int32] {
        try Generator(model: model).generate(prompt: prompt, parameters: SamplingParameters(temperature: 0, maxTokens: steps, ignoreEOS: true))
            .map(\.id)
    }

    @Test func configurationIsRead() throws {
        let config = try ModelConfig(directory: Fixtures.directory(Self.name))
        #expect(config.architecture == .qwen3Moe && config.hasQKNorm)
        #expect(
            config.experts
                == MixtureOfExperts(expertCount: 16, expertsPerToken: 4, intermediateSize: 32, normalizesTopK: true, sparseLayers: [0, 2]))
        #expect(config.intermediateSize == 96)
    }

    @Test("greedy tokens equal transformers' on more prompts")
    func morePrompts() throws {
        let recorded = try Self.recorded()
        let model = try Fixtures.model(Self.name)
        #expect(recorded.extra_prompts.count == 3)
        for prompt in recorded.extra_prompts {
            #expect(try Self.greedy(model, prompt.prompt_ids, steps: prompt.greedy_ids.count) == prompt.greedy_ids)
        }
    }

    /// The same weights with `norm_topk_prob` flipped in `config.json` continue as transformers does with it flipped.
    @Test func normTopKProbIsHonoured() throws {
        let recorded = try Self.recorded()
        let source = try Fixtures.directory(Self.name)
        let directory = FileManager.default.temporaryDirectory.appending(path: "moe-flipped-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for file in try FileManager.default.contentsOfDirectory(atPath: source.path) where file != "config.json" {
            try FileManager.default.createSymbolicLink(at: directory.appending(path: file), withDestinationURL: source.appending(path: file))
        }
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: source.appending(path: "config.json"))) as? [String: Any])
        #expect(config["norm_topk_prob"] as? Bool == true)
        config["norm_topk_prob"] = false
        try JSONSerialization.data(withJSONObject: config).write(to: directory.appending(path: "config.json"))
        let model = try TransformerModel(directory: directory)
        let flipped = recorded.greedy_ids_flipped_norm_topk_prob
        #expect(try Self.greedy(model, recorded.prompt_ids, steps: flipped.count) == flipped)
        #expect(flipped != Array(recorded.greedy_ids.prefix(flipped.count)))
    }

    /// Poisoning one expert's weights with NaN spoils a one-token pass only when the router chose that expert:
    /// of each sparse layer's 16 experts exactly 4 are read, and a dense pass over all of them would fail for all.
    @Test func onlyChosenExpertsAreRead() throws {
        let directory = try Fixtures.directory(Self.name)
        let config = try ModelConfig(directory: directory)
        let generation = try GenerationConfig(directory: directory)
        let checkpoint = try Checkpoint(directory: directory)
        let token = try Self.recorded().prompt_ids[0]
        for layer in [0, 2] {
            var spoiled: [Int] = []
            for expert in 0..<16 {
                let weights = PoisonedExpert(checkpoint, prefix: "model.layers.\(layer).mlp.experts.\(expert).")
                let model = try TransformerModel(config: config, generationConfig: generation, weights: weights)
                let logits = try model.forward([ForwardSegment(cache: model.makeCache(), tokens: [token])])[0][0]
                if logits.contains(where: \.isNaN) { spoiled.append(expert) }
            }
            #expect(spoiled.count == 4, "layer \(layer): experts \(spoiled) changed the logits")
        }
    }

    @Test("decoder_sparse_step and mlp_only_layers choose the sparse layers; num_local_experts is num_experts")
    func sparseLayers() throws {
        func experts(_ extra: String) throws -> MixtureOfExperts? {
            let json =
                #"{"architectures":["Qwen3MoeForCausalLM"],"hidden_size":64,"intermediate_size":96,"num_hidden_layers":6,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":10,"moe_intermediate_size":32"#
                + extra + "}"
            return try ModelConfig(json: Data(json.utf8)).experts
        }
        #expect(try experts(#","num_experts":8,"decoder_sparse_step":2"#)?.sparseLayers == [1, 3, 5])
        #expect(try experts(#","num_experts":8,"mlp_only_layers":[0,4]"#)?.sparseLayers == [1, 2, 3, 5])
        #expect(
            try experts(#","num_local_experts":12,"num_experts_per_tok":3,"norm_topk_prob":true"#)
                == MixtureOfExperts(expertCount: 12, expertsPerToken: 3, intermediateSize: 32, normalizesTopK: true, sparseLayers: Set(0..<6)))
        for bad in [#","num_experts":4,"num_experts_per_tok":5"#, #","decoder_sparse_step":0"#, #","mlp_only_layers":"all""#] {
            let error = try #require(throws: ModelError.self) { try experts(bad) }
            #expect(error.code == .invalidConfig, "\(bad): \(error)")
        }
    }

    /// The fixture's first layer (sparse; llama.cpp's converter maps no dense layer of `qwen3moe`), converted by
    /// llama.cpp's converter (3-D expert tensors `ffn_{gate,up,down}_exps`, router `ffn_gate_inp`), runs as the
    /// same layer from safetensors does.
    @Test func ggufMatchesSafetensors() throws {
        let source = try Fixtures.directory(Self.name)
        let directory = FileManager.default.temporaryDirectory.appending(path: "moe-one-layer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for file in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"] {
            try FileManager.default.copyItem(at: source.appending(path: file), to: directory.appending(path: file))
        }
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: source.appending(path: "config.json"))) as? [String: Any])
        json["num_hidden_layers"] = 1
        json["mlp_only_layers"] = [Int]()
        json["layer_types"] = ["full_attention"]
        try JSONSerialization.data(withJSONObject: json).write(to: directory.appending(path: "config.json"))
        let checkpoint = try Checkpoint(directory: source)
        try writeSafetensors(
            checkpoint, names: checkpoint.tensorNames.filter { !$0.hasPrefix("model.layers.") || $0.hasPrefix("model.layers.0.") },
            to: directory.appending(path: "model.safetensors"))

        let out = directory.appending(path: "model-f32.gguf")
        try runScript(
            "convert-hf-gguf.py", [try LlamaCppSource.directory().path, "qwen2", directory.path, "--outtype", "f32", "--outfile", out.path])
        let file = try GGUFFile(url: out)
        #expect(file.architectureName == "qwen3moe")
        #expect(try #require(file.tensorInfo(named: "blk.0.ffn_gate_exps.weight")).dimensions == [64, 32, 16])
        #expect(try #require(file.tensorInfo(named: "blk.0.ffn_down_exps.weight")).dimensions == [32, 64, 16])
        let config = try ModelConfig(gguf: file), reference = try ModelConfig(directory: directory)
        #expect(config.experts?.sparseLayers == [0] && config.experts?.normalizesTopK == true)
        #expect(config == reference)

        let model = try TransformerModel(gguf: file), safetensors = try TransformerModel(directory: directory, instructionSet: .exact)
        let recorded = try Self.recorded()
        let expected = try Self.greedy(safetensors, recorded.prompt_ids, steps: 32)
        #expect(try Self.greedy(model, recorded.prompt_ids, steps: 32) == expected)
        #expect(Set(expected).count > 2, "a degenerate continuation proves little: \(expected)")
        func logits(_ model: TransformerModel) throws -> [[Float]] {
            try model.forward([ForwardSegment(cache: model.makeCache(), tokens: recorded.prompt_ids, logits: .all)])[0]
        }
        let difference = zip(try logits(model), try logits(safetensors)).map { maxAbsDifference($0, $1) }.max() ?? .infinity
        #expect(difference < 1e-3, "max |Δ| \(difference)")
    }
}

/// Writes the named tensors of a checkpoint to one safetensors file.
private func writeSafetensors(_ checkpoint: Checkpoint, names: [String], to url: URL) throws {
    var header: [String: Any] = [:]
    var data = Data()
    for name in names {
        let tensor = try #require(checkpoint.tensor(named: name))
        let bytes = tensor.count * tensor.dtype.size
        header[name] = ["dtype": tensor.dtype.rawValue, "shape": tensor.shape, "data_offsets": [data.count, data.count + bytes]]
        data.append(Data(bytes: tensor.data, count: bytes))
    }
    let json = try JSONSerialization.data(withJSONObject: header)
    var file = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Data($0) }
    file.append(json)
    file.append(data)
    try file.write(to: url)
}

/// A checkpoint with one expert's three matrices replaced by NaN (f32, same shapes).
final class PoisonedExpert: WeightSource, @unchecked Sendable {
    private let source: any WeightSource
    private let prefix: String
    private let lock = NSLock()
    private var storage: [String: UnsafeMutableBufferPointer<Float>] = [:]

    init(_ source: any WeightSource, prefix: String) {
        self.source = source
        self.prefix = prefix
    }

    deinit {
        storage.values.forEach { $0.deallocate() }
    }

    func tensor(named name: String) -> TensorView? {
        guard let original = source.tensor(named: name) else { return nil }
        guard name.hasPrefix(prefix) else { return original }
        lock.lock()
        defer { lock.unlock() }
        let buffer = storage[name] ?? .allocate(capacity: original.count)
        buffer.initialize(repeating: .nan)
        storage[name] = buffer
        return TensorView(name: name, dtype: .f32, shape: original.shape, data: UnsafeRawPointer(buffer.baseAddress!))
    }
}
