import BuiltinEngine
import EngineCompute
import Foundation
import Testing

@testable import ModelText

/// Tiny Qwen2 and Llama 3 models converted by llama.cpp's converter and quantized by its quantizer
/// (`scripts/make-gguf-models.py`), run by the engine against the same model's safetensors.
@Suite("GGUF models", .serialized)
struct GGUFModelTests {
    static let names = ["qwen2", "llama3"]

    /// The models, made once per test process.
    static let directory: Result<URL, any Error> = Result {
        let out = FileManager.default.temporaryDirectory.appending(path: "gguf-models-\(UUID().uuidString)")
        let source = try LlamaCppSource.directory()
        let quantize = source.deletingLastPathComponent().appending(path: "bin/llama-quantize")
        guard FileManager.default.isExecutableFile(atPath: quantize.path) else {
            throw FixtureMissing("\(quantize.path) is missing: run scripts/build-llamacpp.sh")
        }
        try runScript("make-gguf-models.py", [out.path, source.path, quantize.path])
        return out
    }

    static func file(_ name: String, _ kind: String) throws -> URL {
        try directory.get().appending(path: "\(name)-\(kind).gguf")
    }

    /// A few hundred tokens of text through the model's own tokenizer.
    static func text(_ tokenizer: Tokenizer) throws -> [Int32] {
        let text = try String(contentsOf: TextFixtures.url("big.txt"), encoding: .utf8)
        return try tokenizer.encode(String(text.prefix(1500))).prefix(320).map { Int32($0) }
    }

    @Test("every tensor of the quantized files dequantizes like the gguf package", arguments: names)
    func dequantizeRealFiles(name: String) throws {
        for kind in ["q8_0", "q4_k_m"] {
            let url = try Self.file(name, kind)
            let reference = url.deletingPathExtension().appendingPathExtension("reference.gguf")
            try runScript("gguf-reference.py", ["dequantize", url.path, reference.path])
            let file = try GGUFFile(url: url), expected = try GGUFFile(url: reference)
            #expect(Set(file.tensors.map(\.type)).isSuperset(of: kind == "q8_0" ? [.q8_0] : [.q4_K, .q6_K]))
            for tensor in file.tensors {
                try DequantizeTests.expectIdentical(tensor, in: file, reference: try #require(expected.tensorInfo(named: tensor.name)), in: expected)
            }
        }
    }

    @Test("tokenizer, template and configuration equal the Hugging Face directory's", arguments: names)
    func metadata(name: String) throws {
        let gguf = try GGUFFile(url: Self.file(name, "q4_k_m"))
        let hf = try Self.directory.get().appending(path: name)
        var config = try ModelConfig(gguf: gguf)
        var reference = try ModelConfig(directory: hf)
        #expect((config.ropeFrequencyFactors != nil) == (reference.ropeScaling != nil))
        config.ropeFrequencyFactors = nil
        reference.ropeScaling = nil
        #expect(config == reference)
        let tokenizer = try Tokenizer(gguf: gguf), referenceTokenizer = try Tokenizer(directory: hf)
        for text in TextFixtures.corpus { #expect(try tokenizer.encode(text) == referenceTokenizer.encode(text), "\(text.debugDescription)") }
        #expect(try ChatTemplate(gguf: gguf).source == ChatTemplate(directory: hf).source)
        let generation = GenerationConfig(gguf: gguf), referenceGeneration = try GenerationConfig(directory: hf)
        #expect(Set(referenceGeneration.eosTokenIds).isSubset(of: Set(generation.eosTokenIds)))
        #expect(generation.topK == referenceGeneration.topK && generation.temperature == referenceGeneration.temperature)
    }

    @Test("greedy tokens of the F32 GGUF equal the safetensors model's", arguments: names)
    func greedyF32(name: String) throws {
        let hf = try Self.directory.get().appending(path: name)
        let reference = try TransformerModel(directory: hf)
        let model = try TransformerModel(gguf: Self.file(name, "f32"))
        let prompt = Array(try Self.text(Tokenizer(directory: hf)).prefix(24))
        let parameters = SamplingParameters(temperature: 0, maxTokens: 48, ignoreEOS: true)
        let expected = try Generator(model: reference).generate(prompt: prompt, parameters: parameters).map(\.id)
        let tokens = try Generator(model: model).generate(prompt: prompt, parameters: parameters).map(\.id)
        #expect(tokens == expected)
        #expect(Set(expected).count > 4, "a degenerate continuation proves little: \(expected)")
        let logits = try model.forward([ForwardSegment(cache: model.makeCache(), tokens: prompt, logits: .all)])[0]
        let referenceLogits = try reference.forward([ForwardSegment(cache: reference.makeCache(), tokens: prompt, logits: .all)])[0]
        let difference = zip(logits, referenceLogits).map { maxAbsDifference($0, $1) }.max() ?? 0
        #expect(difference < 1e-3, "max |Δ| \(difference)")
    }

    @Test("teacher-forced top-1 agreement of Q8_0 and Q4_K_M with F32", arguments: names)
    func quantizedAgreement(name: String) throws {
        let f32 = try TransformerModel(gguf: Self.file(name, "f32"))
        let tokens = try Self.text(Tokenizer(gguf: GGUFFile(url: Self.file(name, "f32"))))
        #expect(tokens.count >= 300)
        let reference = try f32.forward([ForwardSegment(cache: f32.makeCache(capacity: tokens.count), tokens: tokens, logits: .all)])[0]
        for (kind, minimum) in [("q8_0", 0.99), ("q4_k_m", 0.95)] {
            let agreement = try Self.agreement(of: TransformerModel(gguf: Self.file(name, kind)), with: reference, tokens: tokens)
            print("GGUF \(name) \(kind): \(agreement)")
            #expect(agreement.top1 >= minimum, "\(name) \(kind): \(agreement)")
        }
    }

    /// The same through decode: one token per forward pass, as generation runs, so the single-token kernels (and
    /// their activations quantized per block of 256 for Q4_K and Q6_K) produce every row.
    @Test("teacher-forced top-1 agreement of Q4_K_M with F32, one token at a time", arguments: names)
    func quantizedDecodeAgreement(name: String) throws {
        let f32 = try TransformerModel(gguf: Self.file(name, "f32"))
        let tokens = try Self.text(Tokenizer(gguf: GGUFFile(url: Self.file(name, "f32"))))
        let reference = try f32.forward([ForwardSegment(cache: f32.makeCache(capacity: tokens.count), tokens: tokens, logits: .all)])[0]
        let model = try TransformerModel(gguf: Self.file(name, "q4_k_m"))
        let cache = model.makeCache(capacity: tokens.count)
        let rows = try tokens.map { try model.forward([ForwardSegment(cache: cache, tokens: [$0], logits: .all)])[0][0] }
        let agreement = Self.agreement(of: rows, with: reference)
        print("GGUF \(name) q4_k_m, decode: \(agreement)")
        #expect(agreement.top1 >= 0.95, "\(name) q4_k_m decode: \(agreement)")
    }

    @Test("quantized on load, the safetensors model agrees with its F32 weights", arguments: names)
    func quantizedOnLoad(name: String) throws {
        let hf = try Self.directory.get().appending(path: name)
        let f32 = try TransformerModel(directory: hf)
        let tokens = try Self.text(Tokenizer(directory: hf))
        let reference = try f32.forward([ForwardSegment(cache: f32.makeCache(capacity: tokens.count), tokens: tokens, logits: .all)])[0]
        for (type, minimum, maximumKL) in [(GGMLType.q8_0, 0.99, 0.001), (.q4_0, 0.95, 0.05)] {
            let weights = try QuantizedWeights(Checkpoint(directory: hf), type: type)
            let matrix = try #require(weights.tensor(named: "model.layers.0.mlp.down_proj.weight"))
            #expect(matrix.blockType == type && weights.tensor(named: "model.norm.weight")?.blockType == nil)
            let agreement = try Self.agreement(of: TransformerModel(directory: hf, quantization: type), with: reference, tokens: tokens)
            print("safetensors \(name) quantized on load to \(type): \(agreement)")
            #expect(agreement.top1 >= minimum && agreement.meanKL <= maximumKL, "\(name) \(type): \(agreement)")
        }
    }

    /// Teacher-forced agreement of `model` with the `reference` logits of `tokens`: the share of positions whose
    /// top-1 token is the same, and the mean KL divergence of the model's distribution from the reference's.
    static func agreement(of model: TransformerModel, with reference: [[Float]], tokens: [Int32]) throws -> Agreement {
        let rows = try model.forward([ForwardSegment(cache: model.makeCache(capacity: tokens.count), tokens: tokens, logits: .all)])[0]
        return agreement(of: rows, with: reference)
    }

    static func agreement(of rows: [[Float]], with reference: [[Float]]) -> Agreement {
        var agree = 0
        var divergence = 0.0
        for (row, expected) in zip(rows, reference) {
            if argmax(row) == argmax(expected) { agree += 1 }
            divergence += kl(expected, row)
        }
        return Agreement(agree: agree, count: rows.count, meanKL: divergence / Double(rows.count))
    }

    struct Agreement: CustomStringConvertible {
        let agree: Int, count: Int, meanKL: Double
        var top1: Double { Double(agree) / Double(count) }
        var description: String { "top-1 agreement with F32 \(agree)/\(count) = \(top1), mean KL \(meanKL)" }
    }

    @Test("an unsupported tensor type is an error naming it")
    func unsupportedType() throws {
        var builder = GGUFBuilder()
        let source = try GGUFFile(url: Self.file("qwen2", "q8_0"))
        builder.metadata = [
            ("general.architecture", .string("qwen2")), ("qwen2.embedding_length", .u32(256)), ("qwen2.feed_forward_length", .u32(512)),
            ("qwen2.block_count", .u32(1)), ("qwen2.attention.head_count", .u32(4)), ("qwen2.context_length", .u32(64)),
        ]
        builder.tensors = [.init(name: "token_embd.weight", dimensions: [256, 2], type: 6, data: [UInt8](repeating: 0, count: 2 * 8 * 22))]
        let url = try builder.write()
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try TransformerModel(gguf: url)
            Issue.record("Q5_0 was accepted")
        } catch let error as ModelError {
            #expect(error.message.contains("Q5_0") && error.message.contains("token_embd.weight"), "\(error)")
        }
        #expect(source.tensors.contains { $0.type == .q8_0 })
    }
}

private func argmax(_ values: [Float]) -> Int {
    values.indices.max { values[$0] < values[$1] } ?? 0
}

/// KL(p ‖ q) of the softmaxes of two logit rows.
private func kl(_ p: [Float], _ q: [Float]) -> Double {
    func logSoftmax(_ x: [Float]) -> [Double] {
        let top = Double(x.max() ?? 0)
        let sum = x.reduce(0.0) { $0 + exp(Double($1) - top) }
        return x.map { Double($0) - top - log(sum) }
    }
    let lp = logSoftmax(p), lq = logSoftmax(q)
    return zip(lp, lq).reduce(0.0) { $0 + exp($1.0) * ($1.0 - $1.1) }
}
