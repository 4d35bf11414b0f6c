import EngineCompute
import Foundation
import ModelText
import Testing

@Suite("loading model directories")
struct ModelLoadingTests {
    private func directory(config: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try Data(config.utf8).write(to: url.appendingPathComponent("config.json"))
        return url
    }

    @Test func unsupportedArchitectureNamesTheSupportedOnes() throws {
        let url = try directory(config: #"{"architectures":["GPTNeoXForCausalLM"],"model_type":"gpt_neox","hidden_size":64}"#)
        defer { try? FileManager.default.removeItem(at: url) }
        let error = try #require(throws: ModelError.self) { try TransformerModel(directory: url) }
        #expect(error.code == .unsupportedArchitecture)
        #expect(error.message.contains("GPTNeoXForCausalLM"))
        for name in [
            "Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "Phi3ForCausalLM", "Gemma3ForCausalLM",
        ] {
            #expect(error.message.contains(name), "\(error.message)")
        }
    }

    @Test func unsupportedRopeScalingIsRejected() throws {
        let config =
            #"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_scaling":{"rope_type":"yarn","factor":4.0}}"#
        let error = try #require(throws: ModelError.self) { try ModelConfig(json: Data(config.utf8)) }
        #expect(error.code == .unsupportedArchitecture)
        #expect(error.message.contains("yarn"))
    }

    @Test func missingWeightsAreReported() throws {
        let url = try directory(
            config:
                #"{"architectures":["Qwen2ForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":10}"#
        )
        defer { try? FileManager.default.removeItem(at: url) }
        let error = try #require(throws: ModelError.self) { try TransformerModel(directory: url) }
        #expect(error.message.contains("model.safetensors"))
    }

    @Test(arguments: Fixtures.names + Fixtures.mixtureOfExperts)
    func configsMatchTheirCheckpoints(name: String) throws {
        let expected = try Fixtures.expected(name)
        let directory = try Fixtures.directory(name)
        let config = try ModelConfig(directory: directory)
        #expect(config.architecture.rawValue == expected.architecture)
        #expect(config.vocabSize == expected.vocab_size)
        let generation = try GenerationConfig(directory: directory)
        #expect(generation.eosTokenIds == expected.eos_token_ids)
        let checkpoint = try Checkpoint(directory: directory)
        // Tied models ship no lm_head; untied ones must.
        #expect(checkpoint.tensorNames.contains("lm_head.weight") == !config.tieWordEmbeddings)
        let dtypes = Set(checkpoint.files.flatMap { $0.entries.values.map(\.dtype.rawValue) })
        let stored = ["float32": "F32", "bfloat16": "BF16", "float16": "F16"][expected.storage_dtype]
        #expect(dtypes == [try #require(stored)])
    }

    @Test func fixturesCoverEveryLayoutAndDtype() throws {
        var shardCounts: [Int] = []
        var tied: [Bool] = []
        var dtypes: Set<String> = []
        for name in Fixtures.names {
            let directory = try Fixtures.directory(name)
            shardCounts.append(try Checkpoint(directory: directory).files.count)
            tied.append(try ModelConfig(directory: directory).tieWordEmbeddings)
            dtypes.insert(try Fixtures.expected(name).storage_dtype)
        }
        #expect(shardCounts.contains(1) && shardCounts.contains { $0 > 1 })
        #expect(tied.contains(true) && tied.contains(false))
        #expect(dtypes == ["float32", "bfloat16", "float16"])
    }
}
