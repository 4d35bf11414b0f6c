import BuiltinEngine
import EngineCompute
import Foundation
import Testing

@testable import ModelText

/// Phi-3, Phi-4-mini (partial rotary and longrope) and Gemma 3 fixtures converted to F32 GGUF by llama.cpp's own
/// converter, run against what transformers recorded for the safetensors models: greedy tokens on every prompt,
/// logits, and the server's full and streamed text.
@Suite("GGUF architectures: phi3 and gemma3", .serialized)
struct GGUFArchitectureTests {
    static let names = ["phi3-tiny", "phi4mini-tiny", "gemma3-gguf-tiny"]

    /// The converted files by fixture name, made once per test process.
    static let files: Result<[String: URL], any Error> = Result {
        let out = FileManager.default.temporaryDirectory.appending(path: "gguf-architectures-\(UUID().uuidString)")
        let source = try LlamaCppSource.directory()
        var files: [String: URL] = [:]
        for name in names {
            let directory = out.appending(path: name)
            try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: try Fixtures.directory(name), to: directory)
            if try Fixtures.expected(name).architecture == "Phi3ForCausalLM" {
                // The converter reads a Phi-3 tokenizer from `tokenizer.model` unless the class is GPT2Tokenizer (as
                // Phi-4-mini's is); the fixtures' byte-level BPE tokenizer is that kind.
                let url = directory.appending(path: "tokenizer_config.json")
                var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
                config["tokenizer_class"] = "GPT2Tokenizer"
                try JSONSerialization.data(withJSONObject: config).write(to: url)
            }
            let file = out.appending(path: "\(name).gguf")
            try runScript("convert-hf-gguf.py", [source.path, "llama-bpe", directory.path, "--outtype", "f32", "--outfile", file.path])
            files[name] = file
        }
        return files
    }

    static func file(_ name: String) throws -> URL {
        try #require(try files.get()[name])
    }

    /// The file's configuration is the checkpoint's, up to what GGUF stores differently: Gemma's norm weights with
    /// the `1 +` added, longrope's factors and attention factor as f32.
    @Test("the configuration equals config.json's", arguments: names)
    func configuration(name: String) throws {
        let gguf = try GGUFFile(url: Self.file(name))
        let config = try ModelConfig(gguf: gguf)
        var reference = try ModelConfig(directory: Fixtures.directory(name))
        #expect(gguf.architectureName == (name.hasPrefix("gemma3") ? "gemma3" : "phi3"))
        #expect(config.normWeightOffset == 0)
        reference.normWeightOffset = 0
        if case .longrope(var longrope) = reference.ropeScaling {
            longrope.shortFactors = longrope.shortFactors.map { Double(Float($0)) }
            longrope.longFactors = longrope.longFactors.map { Double(Float($0)) }
            longrope.attentionFactor = Double(Float(longrope.attentionFactor))
            reference.ropeScaling = .longrope(longrope)
            #expect(longrope.shortFactors != longrope.longFactors)
            #expect(config.rotaryDimensions == 12 && config.headDim == 16)
        }
        #expect(config == reference)
        if name.hasPrefix("gemma3") {
            #expect(config.layerTypes == [.sliding, .sliding, .sliding, .sliding, .sliding, .full] && config.slidingWindow == 6)
            #expect(config.localRopeTheta == 10000 && config.ropeScaling == .linear(factor: 2) && config.finalLogitSoftcapping == 3)
            #expect(config.activation == .geluTanh && config.queryPreAttentionScalar == 32 && config.tieWordEmbeddings)
        }
    }

    @Test("greedy tokens and logits equal transformers' on every recorded prompt", arguments: names)
    func greedy(name: String) throws {
        let expected = try Fixtures.expected(name)
        let model = try TransformerModel(gguf: Self.file(name))
        let generator = Generator(model: model)
        let prompts = [(expected.prompt_ids, expected.greedy_ids)] + (expected.more_prompts ?? []).map { ($0.prompt_ids, $0.greedy_ids) }
        #expect(prompts.count >= 4)
        for (ids, greedy) in prompts {
            let tokens = try generator.generate(
                prompt: ids, parameters: SamplingParameters(temperature: 0, maxTokens: greedy.count, ignoreEOS: true))
            #expect(tokens.map(\.id) == greedy, "\(name): \(ids)")
        }
        let rows = try model.forward([ForwardSegment(cache: model.makeCache(), tokens: expected.prompt_ids, logits: .all)])[0]
        let worst = zip(rows, expected.logits).map { maxAbsDifference($0, $1) }.max() ?? .infinity
        #expect(worst < ForwardTests.tolerance(name), "\(name): max |Δ| \(worst)")
    }

    @Test("completions from the GGUF file are transformers' greedy text, streamed too", arguments: names)
    func server(name: String) async throws {
        try await ArchitectureTests.checkServer(path: Self.file(name), name: name)
    }

    /// Quantized to Q8_0 by llama.cpp's quantizer, the fused (phi3) and sandwich-normed (gemma3) layers read their
    /// blocks in place: teacher-forced over the prompt and transformers' continuation, the logits stay close to the
    /// F32 file's.
    @Test("Q8_0 agrees with the F32 file", arguments: names)
    func quantized(name: String) throws {
        let f32 = try Self.file(name)
        let quantize = try LlamaCppSource.directory().deletingLastPathComponent().appending(path: "bin/llama-quantize")
        guard FileManager.default.isExecutableFile(atPath: quantize.path) else {
            throw FixtureMissing("\(quantize.path) is missing: run scripts/build-llamacpp.sh")
        }
        let q8 = f32.deletingPathExtension().appendingPathExtension("q8_0.gguf")
        let process = Process()
        process.executableURL = quantize
        process.arguments = [f32.path, q8.path, "Q8_0"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0)
        let file = try GGUFFile(url: q8)
        let projection = name.hasPrefix("gemma3") ? "blk.0.attn_q.weight" : "blk.0.attn_qkv.weight"
        #expect(file.tensorInfo(named: projection)?.type == .q8_0)
        let expected = try Fixtures.expected(name)
        let tokens = expected.prompt_ids + expected.greedy_ids
        let reference = try TransformerModel(gguf: f32)
        let rows = try reference.forward([ForwardSegment(cache: reference.makeCache(), tokens: tokens, logits: .all)])[0]
        let agreement = try GGUFModelTests.agreement(of: TransformerModel(gguf: file), with: rows, tokens: tokens)
        print("GGUF \(name) q8_0: \(agreement)")
        // The random models' near ties flip some top-1 tokens (0.90–0.96 here); the divergence shows the blocks are read
        // right (about 5e-5, where a misplaced row or block gives orders of magnitude more).
        #expect(agreement.top1 >= 0.8 && agreement.meanKL < 1e-3, "\(name): \(agreement)")
    }

    /// A Gemma 3 file's layer pattern as a per-layer list of booleans or a period (6 when absent), a missing local
    /// base, no sliding window, and a refused rope scaling.
    @Test func gemma3LayerPattern() throws {
        func config(_ extra: [(String, GGUFBuilder.Value)]) throws -> ModelConfig {
            let base: [(String, GGUFBuilder.Value)] = [
                ("general.architecture", .string("gemma3")), ("gemma3.embedding_length", .u32(64)), ("gemma3.block_count", .u32(6)),
                ("gemma3.feed_forward_length", .u32(128)), ("gemma3.attention.head_count", .u32(4)),
                ("gemma3.attention.head_count_kv", .u32(2)), ("gemma3.attention.key_length", .u32(32)), ("gemma3.vocab_size", .u32(10)),
            ]
            let url = try GGUFBuilder(metadata: base + extra).write()
            defer { try? FileManager.default.removeItem(at: url) }
            return try ModelConfig(gguf: GGUFFile(url: url))
        }
        let window: [(String, GGUFBuilder.Value)] = [("gemma3.attention.sliding_window", .u32(6))]
        #expect(try config(window).layerTypes == [.sliding, .sliding, .sliding, .sliding, .sliding, .full])
        #expect(try config(window).localRopeTheta == 10000)
        let flags = try config(
            window + [("gemma3.attention.sliding_window_pattern", .raw(type: 9, bytes: Self.boolArray([true, false, true, false, true, false])))])
        #expect(flags.layerTypes == [.sliding, .full, .sliding, .full, .sliding, .full])
        let period = try config(window + [("gemma3.attention.sliding_window_pattern", .u32(3)), ("gemma3.rope.freq_base_swa", .f32(500))])
        #expect(period.layerTypes == [.sliding, .sliding, .full, .sliding, .sliding, .full] && period.localRopeTheta == 500)
        let global = try config([])
        #expect(global.layerTypes.isEmpty && global.window(layer: 0) == nil && global.queryPreAttentionScalar == 32)
        let error = try #require(throws: ModelError.self) { try config(window + [("gemma3.rope.scaling.type", .string("yarn"))]) }
        #expect(error.code == .unsupportedArchitecture && error.message.contains("rope scaling yarn"))
    }

    /// The bytes of a GGUF array of booleans after its value type.
    static func boolArray(_ flags: [Bool]) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt32(7).littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(flags.count).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes + flags.map { $0 ? 1 : 0 }
    }
}
