import EngineCompute
import Foundation
import Hummingbird
import HummingbirdTesting
import ModelText
import Testing

@testable import BuiltinEngine

/// Mistral, SmolLM2 (Llama), Phi-3 and Gemma 3 against transformers on several prompts, through the model and
/// through the server; the features each fixture covers; and the configurations the engine refuses.
@Suite("architectures: Mistral, SmolLM2, Phi-3, Gemma 3")
struct ArchitectureTests {
    @Test("greedy tokens equal transformers' on every recorded prompt", arguments: Fixtures.multiPromptNames)
    func greedyOnMorePrompts(name: String) throws {
        let expected = try Fixtures.expected(name)
        let prompts = try #require(expected.more_prompts)
        #expect(prompts.count >= 3)
        let generator = Generator(model: try Fixtures.model(name))
        for prompt in prompts {
            let tokens = try generator.generate(
                prompt: prompt.prompt_ids, parameters: SamplingParameters(temperature: 0, maxTokens: prompt.greedy_ids.count, ignoreEOS: true))
            #expect(tokens.map(\.id) == prompt.greedy_ids, "\(name): \(prompt.prompt.debugDescription)")
        }
    }

    /// The model with one configuration value changed gives logits away from transformers' on the fixture's prompt:
    /// each feature the forward pass implements is one the comparison would catch if it were wrong.
    @Test(
        "every feature of the fixtures changes their logits",
        arguments: [
            ("mistral-tiny", "sliding window"), ("phi3-tiny", "sliding window"), ("gemma3-tiny", "sliding window"),
            ("gemma3-tiny", "local RoPE base"), ("gemma3-tiny", "linear RoPE scaling"), ("gemma3-tiny", "query_pre_attn_scalar"),
            ("gemma3-tiny", "final logit soft-capping"), ("gemma3-tiny", "GeGLU"), ("phi4mini-tiny", "long factors"),
            ("phi4mini-tiny", "longrope attention factor"), ("phi4mini-tiny", "partial rotary"),
        ])
    func featuresMatter(name: String, feature: String) throws {
        let directory = try Fixtures.directory(name)
        var config = try ModelConfig(directory: directory)
        switch feature {
        case "sliding window": config.slidingWindow = nil
        case "local RoPE base": config.localRopeTheta = nil
        case "linear RoPE scaling": config.ropeScaling = nil
        case "query_pre_attn_scalar": config.queryPreAttentionScalar = nil
        case "final logit soft-capping": config.finalLogitSoftcapping = nil
        case "GeGLU": config.activation = .silu
        case "long factors", "longrope attention factor", "partial rotary":
            guard case .longrope(var longrope) = config.ropeScaling else {
                Issue.record("\(name) has no longrope")
                return
            }
            switch feature {
            case "long factors": longrope.longFactors = longrope.shortFactors
            case "longrope attention factor": longrope.attentionFactor = 1
            default:
                // Rotating whole heads: the pass-through dimensions turned by unscaled frequencies.
                let extra = [Double](repeating: 1, count: (config.headDim - config.rotaryDimensions) / 2)
                config.rotaryDimensions = config.headDim
                longrope.shortFactors += extra
                longrope.longFactors += extra
            }
            config.ropeScaling = .longrope(longrope)
        default: Issue.record("unknown feature \(feature)")
        }
        let model = try TransformerModel(
            config: config, generationConfig: try GenerationConfig(directory: directory), weights: try Checkpoint(directory: directory))
        let expected = try Fixtures.expected(name)
        let rows = try model.forward([ForwardSegment(cache: model.makeCache(), tokens: expected.prompt_ids, logits: .all)])[0]
        let worst = zip(rows, expected.logits).map { maxAbsDifference($0, $1) }.max() ?? 0
        #expect(worst > 10 * ForwardTests.tolerance, "\(name) without \(feature): max |Δ| \(worst)")
    }

    @Test("completions are transformers' greedy text, and streaming gives the same text", arguments: Fixtures.multiPromptNames)
    func serverGreedyAndStreaming(name: String) async throws {
        try await Self.checkServer(path: try Fixtures.directory(name), name: name)
    }

    /// Serves the model at `path` (a directory or GGUF file of fixture `name`) and checks that each recorded prompt's
    /// completion is transformers' greedy text, in full and streamed.
    static func checkServer(path: URL, name: String) async throws {
        let expected = try Fixtures.expected(name)
        let runtime = try EngineRuntime(directory: path, servedName: "tiny")
        defer { runtime.scheduler.stop() }
        let app = Application(router: EngineServer(runtime: runtime).router())
        let prompts = [(expected.prompt_ids, expected.greedy_ids)] + (expected.more_prompts ?? []).map { ($0.prompt_ids, $0.greedy_ids) }
        try await app.test(.router) { client in
            for (ids, greedy) in prompts {
                let wanted = try runtime.tokenizer.decode(greedy.map(Int.init), skipSpecialTokens: true)
                // repetition_penalty 1 overrides generation_config.json's, which transformers' greedy run did not apply.
                let body: [String: Any] = [
                    "prompt": ids.map(Int.init), "max_tokens": greedy.count, "temperature": 0, "repetition_penalty": 1, "ignore_eos": true,
                ]
                try await client.execute(uri: "/v1/completions", method: .post, body: try EngineServerTests.json(body)) { response in
                    #expect(response.status == .ok)
                    let choice = try #require((try EngineServerTests.object(response.body)["choices"] as? [[String: Any]])?.first)
                    #expect(choice["text"] as? String == wanted, "\(name)")
                }
                var streamed = body
                streamed["stream"] = true
                try await client.execute(uri: "/v1/completions", method: .post, body: try EngineServerTests.json(streamed)) { response in
                    let events = String(buffer: response.body).components(separatedBy: "\n\n").filter { !$0.isEmpty }
                    #expect(events.last == "data: [DONE]")
                    var joined = ""
                    for event in events.dropLast() {
                        let object = try #require(try JSONSerialization.jsonObject(with: Data(event.dropFirst(6).utf8)) as? [String: Any])
                        joined += ((object["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
                    }
                    #expect(joined == wanted, "\(name) streamed")
                }
            }
        }
    }

    @Test("Gemma 3's layer types come from layer_types or sliding_window_pattern; Mistral and Phi-3 slide every layer")
    func layerTypes() throws {
        let gemma = try ModelConfig(directory: try Fixtures.directory("gemma3-tiny"))
        #expect(gemma.layerTypes == [.sliding, .full, .sliding, .full])
        #expect((0..<4).map { gemma.window(layer: $0) } == [6, nil, 6, nil])
        #expect(gemma.localRopeTheta == 10000 && gemma.ropeTheta == 1_000_000 && gemma.ropeScaling == .linear(factor: 2))
        #expect(gemma.activation == .geluTanh && gemma.tieWordEmbeddings && gemma.embeddingScale == 8)
        var object = try Self.config("gemma3-tiny")
        object["layer_types"] = nil
        object["sliding_window_pattern"] = 3
        let patterned = try ModelConfig(json: JSONSerialization.data(withJSONObject: object))
        #expect(patterned.layerTypes == [.sliding, .sliding, .full, .sliding])
        let mistral = try ModelConfig(directory: try Fixtures.directory("mistral-tiny"))
        #expect(mistral.layerTypes.isEmpty && (0..<3).allSatisfy { mistral.window(layer: $0) == 8 })
        #expect(mistral.headDim == 24)
        object = try Self.config("mistral-tiny")
        object["sliding_window"] = NSNull()
        #expect(try ModelConfig(json: JSONSerialization.data(withJSONObject: object)).window(layer: 0) == nil)
    }

    /// Configuration values the engine does not implement are refused with an error naming them.
    @Test(
        "unsupported configuration values are named",
        arguments: [
            ("phi3-tiny", "rope_scaling", #"{"rope_type": "dynamic", "factor": 2.0}"#, "rope_scaling type dynamic is not supported"),
            ("mistral-tiny", "rope_scaling", #"{"rope_type": "yarn", "factor": 4.0}"#, "default, linear, llama3 and longrope"),
            ("gemma3-tiny", "partial_rotary_factor", "0.5", "partial_rotary_factor 0.5"),
            ("mistral-tiny", "hidden_act", #""gelu""#, "hidden_act gelu"),
            ("gemma3-tiny", "hidden_activation", #""relu""#, "hidden_activation relu"),
            ("gemma3-tiny", "use_bidirectional_attention", "true", "use_bidirectional_attention"),
            ("gemma3-tiny", "layer_types", #"["chunked_attention"]"#, "layer type chunked_attention"),
        ])
    func unsupportedValues(name: String, key: String, json: String, message: String) throws {
        var object = try Self.config(name)
        object[key] = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
        if key == "layer_types" { object["num_hidden_layers"] = 1 }
        let error = try #require(throws: ModelError.self) { try ModelConfig(json: JSONSerialization.data(withJSONObject: object)) }
        #expect(error.code == .unsupportedArchitecture)
        #expect(error.message.contains(message), "\(error.message)")
    }

    /// A fused matrix of the wrong shape is named, not split at the wrong rows.
    @Test func fusedMatrixShapeIsChecked() throws {
        let directory = try Fixtures.directory("phi3-tiny")
        var config = try ModelConfig(directory: directory)
        config.kvHeadCount = 4
        let error = try #require(throws: ModelError.self) {
            try TransformerModel(
                config: config, generationConfig: try GenerationConfig(directory: directory), weights: try Checkpoint(directory: directory))
        }
        #expect(error.message.contains("qkv_proj"))
    }

    private static func config(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: try Fixtures.directory(name).appendingPathComponent("config.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }
}
