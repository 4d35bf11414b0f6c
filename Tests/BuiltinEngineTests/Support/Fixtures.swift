import EngineCompute
import Foundation
import Testing

/// What `scripts/make-fixtures.py` recorded from transformers for one tiny model.
struct Expected: Decodable {
    var architecture: String
    var storage_dtype: String
    var vocab_size: Int
    var prompt_ids: [Int32]
    var logits: [[Float]]
    var greedy_ids: [Int32]
    var eos_token_ids: [Int32]
    var chat_prompt_ids: [Int32]
    /// Further prompts with their greedy continuations (the fixtures made since Mistral, Phi-3 and Gemma 3).
    var more_prompts: [PromptExpectation]?
}

/// One more prompt of a fixture and transformers' greedy continuation of it.
struct PromptExpectation: Decodable {
    var prompt: String
    var prompt_ids: [Int32]
    var greedy_ids: [Int32]
}

/// The committed tiny models under `Fixtures/models/`.
enum Fixtures {
    static let names = [
        "qwen2-tiny", "qwen3-tiny", "llama3-tiny", "smollm2-tiny", "mistral-tiny", "phi3-tiny", "phi4mini-tiny", "gemma3-tiny",
        "gemma3-gguf-tiny",
    ]
    /// The fixtures with ``Expected/more_prompts``.
    static let multiPromptNames = ["smollm2-tiny", "mistral-tiny", "phi3-tiny", "phi4mini-tiny", "gemma3-tiny", "gemma3-gguf-tiny"]
    /// The mixture-of-experts model, kept out of `names`: bf16-rounded activations (the AMX tests) could route a
    /// token to another expert, which changes its logits by more than rounding.
    static let mixtureOfExperts = ["qwen3moe-tiny"]

    static func directory(_ name: String) throws -> URL {
        let root = try #require(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        return root.appendingPathComponent("models").appendingPathComponent(name)
    }

    static func expected(_ name: String) throws -> Expected {
        let data = try Data(contentsOf: directory(name).appendingPathComponent("expected.json"))
        return try JSONDecoder().decode(Expected.self, from: data)
    }

    /// Models are loaded once per name: every test of a model shares the mapping.
    static func model(_ name: String) throws -> TransformerModel {
        try cache.withLock { models in
            if let model = models[name] { return model }
            let model = try TransformerModel(directory: directory(name), instructionSet: .exact)
            models[name] = model
            return model
        }
    }

    private static let cache = LockedModels()
}

extension InstructionSet {
    /// ``preferred`` with bf16 prefill activations split into two parts instead of rounded to one: the tests that
    /// hold logits to 1e-3 of transformers' float32 use it (AMXMatMulTests bounds the rounded default separately).
    static var exact: InstructionSet {
        switch preferred {
        case .avx512BF16Rounded: .avx512BF16
        case .amxBF16: .amx
        default: preferred
        }
    }
}

/// A lock-protected dictionary of loaded models (tests run in parallel).
final class LockedModels: @unchecked Sendable {
    private let lock = NSLock()
    private var models: [String: TransformerModel] = [:]

    func withLock<T>(_ body: (inout [String: TransformerModel]) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&models)
    }
}

/// The largest absolute difference between two equally long vectors.
func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "vectors of \(a.count) and \(b.count) values")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
