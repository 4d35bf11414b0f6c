import Foundation
import Testing

@testable import ModelText

/// The tokenizer, configuration and template built from llama.cpp's vocabulary GGUF files, against the
/// tokenizer.json files made from the same vocabularies (docs/builtin-engine.md, Tokenizer).
@Suite("GGUF tokenizer and configuration")
struct GGUFTokenizerTests {
    static let cases = [("qwen2", "qwen2"), ("llama3", "llama-bpe")]

    /// The vocabulary files parsed once: they hold 150k tokens and 150k-280k merges each.
    static let files: [String: Result<(GGUFFile, Tokenizer), any Error>] = Dictionary(
        uniqueKeysWithValues: cases.map { name, file in
            (
                name,
                Result {
                    let gguf = try GGUFFile(url: LlamaCppSource.vocabulary(file))
                    return (gguf, try Tokenizer(gguf: gguf))
                }
            )
        })

    /// Qwen2.5's added tokens that the vocabulary GGUF lacks (its slots hold `[PADn]` fillers there).
    static let qwenExtras = (try? TextFixtures.tokenizer("qwen2"))?.addedTokens.filter { $0.id >= 151_646 } ?? []

    /// Whether `text` holds one of ``qwenExtras`` (compared as bytes: a combining mark after `>` would hide it
    /// from `String.contains`).
    static func containsExtra(_ text: String) -> Bool {
        qwenExtras.contains { text.utf8.firstRange(of: $0.content.utf8) != nil }
    }

    @Test("ids equal the tokenizers package on the corpus", arguments: cases.map(\.0))
    func corpusIDs(name: String) throws {
        let (_, tokenizer) = try #require(Self.files[name]).get()
        let golden = try #require(TextFixtures.encodings[name])
        #expect(tokenizer.mergeCount == golden.merges)
        var compared = 0
        var mismatches: [String] = []
        for (text, expected) in zip(TextFixtures.corpus, golden.ids) {
            if name == "qwen2", Self.containsExtra(text) { continue }
            compared += 1
            let ids = try tokenizer.encode(text)
            if ids != expected { mismatches.append("\(text.debugDescription): got \(ids) want \(expected)") }
        }
        #expect(compared > 300, "only \(compared) texts compared")
        #expect(mismatches.isEmpty, "\(mismatches.count) mismatches:\n\(mismatches.prefix(5).joined(separator: "\n"))")
    }

    @Test("ids equal tokenizer.json on a large text", arguments: cases.map(\.0))
    func bigText(name: String) throws {
        let (_, tokenizer) = try #require(Self.files[name]).get()
        var text = try String(contentsOf: TextFixtures.url("big.txt"), encoding: .utf8)
        if name == "llama3" {
            let expected = try #require(try TextFixtures.json("big-ids.json", as: [String: [Int]].self)[name])
            #expect(try tokenizer.encode(text) == expected)
        }
        for extra in Self.qwenExtras { text = text.replacingOccurrences(of: extra.content, with: "") }
        #expect(!Self.containsExtra(text))
        let ids = try tokenizer.encode(text)
        #expect(ids.count > 50_000)
        #expect(ids == (try TextFixtures.tokenizer(name).encode(text)))
    }

    @Test("every id decodes to the same bytes and specialness as tokenizer.json", arguments: cases.map(\.0))
    func vocabulary(name: String) throws {
        let (_, tokenizer) = try #require(Self.files[name]).get()
        let reference = try TextFixtures.tokenizer(name)
        let extras = Set(Self.qwenExtras.map(\.id))
        var checked = 0
        for id in 0..<reference.vocabularySize where !extras.contains(id) {
            #expect(try tokenizer.decodeBytes([id]) == reference.decodeBytes([id]), "id \(id)")
            #expect(tokenizer.isSpecial(id) == reference.isSpecial(id), "id \(id)")
            checked += 1
        }
        #expect(checked > 128_000)
    }

    @Test("user-defined tokens are plain added tokens, control tokens special")
    func tokenTypes() throws {
        let (_, tokenizer) = try #require(Self.files["qwen2"]).get()
        let pad = try #require(tokenizer.addedTokenID("[PAD151646]"))
        #expect(pad == 151_646)
        #expect(!tokenizer.isSpecial(pad))
        #expect(try tokenizer.encode("x[PAD151646]").last == pad)
        #expect(tokenizer.isSpecial(try #require(tokenizer.addedTokenID("<|im_end|>"))))
    }

    @Test("configuration from the architecture's keys")
    func configuration() throws {
        let (qwen, _) = try #require(Self.files["qwen2"]).get()
        let config = try ModelConfig(gguf: qwen)
        #expect(config.architecture == .qwen2)
        #expect(config.hiddenSize == 4096 && config.intermediateSize == 11008 && config.layerCount == 32)
        #expect(config.headCount == 32 && config.kvHeadCount == 32 && config.headDim == 128)
        #expect(config.ropeTheta == 1_000_000 && config.maxPositionEmbeddings == 32768)
        #expect(config.rmsNormEps == Float(9.999999974752427e-07))
        #expect(config.vocabSize == 151_936)
        let (llama, _) = try #require(Self.files["llama3"]).get()
        let llamaConfig = try ModelConfig(gguf: llama)
        #expect(llamaConfig.architecture == .llama)
        #expect(llamaConfig.kvHeadCount == 8 && llamaConfig.ropeTheta == 500_000 && llamaConfig.vocabSize == 128_256)
        #expect(llamaConfig.intermediateSize == 14336 && llamaConfig.maxPositionEmbeddings == 8192)
    }

    @Test("stop ids and the chat template come from the file")
    func stopsAndTemplate() throws {
        let (qwen, tokenizer) = try #require(Self.files["qwen2"]).get()
        let generation = GenerationConfig(gguf: qwen)
        #expect(Set(generation.eosTokenIds) == [151_643, 151_645])
        #expect(generation.bosTokenId == 151_643)
        let template = try ChatTemplate(gguf: qwen)
        #expect(template.source == qwen.metadata["tokenizer.chat_template"]?.string)
        #expect(template.eosToken == "<|endoftext|>")
        let text = try template.render(
            messages: [.object(JinjaObject(["role": .string("user"), "content": .string("Hi")]))], addGenerationPrompt: true)
        #expect(text == "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        #expect(try tokenizer.encode(text).first == tokenizer.addedTokenID("<|im_start|>"))
        let (llama, _) = try #require(Self.files["llama3"]).get()
        #expect(Set(GenerationConfig(gguf: llama).eosTokenIds) == [128_001, 128_009])
        #expect(throws: TemplateError.self) { try ChatTemplate(gguf: llama) }
    }

    @Test("an unsupported tokenizer or pre-tokenizer is named")
    func unsupported() throws {
        var builder = GGUFBuilder()
        builder.metadata = [("tokenizer.ggml.model", .string("bert")), ("tokenizer.ggml.tokens", .strings(["a"]))]
        var url = try builder.write()
        defer { try? FileManager.default.removeItem(at: url) }
        #expect(throws: TokenizerError.self) { try Tokenizer(gguf: GGUFFile(url: url)) }
        do { _ = try Tokenizer(gguf: GGUFFile(url: url)) } catch let error as TokenizerError { #expect(error.message.contains("bert tokenizer")) }
        // A SentencePiece tokenizer needs its scores.
        builder.metadata = [("tokenizer.ggml.model", .string("llama")), ("tokenizer.ggml.tokens", .strings(["a"]))]
        try? FileManager.default.removeItem(at: url)
        url = try builder.write()
        do {
            _ = try Tokenizer(gguf: GGUFFile(url: url))
            Issue.record("a llama tokenizer without scores was accepted")
        } catch let error as TokenizerError {
            #expect(error.code == .invalidFile && error.message.contains("tokenizer.ggml.scores"))
        }
        builder.metadata = [
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("falcon")), ("tokenizer.ggml.tokens", .strings(["a"])),
        ]
        try? FileManager.default.removeItem(at: url)
        url = try builder.write()
        do {
            _ = try Tokenizer(gguf: GGUFFile(url: url))
            Issue.record("falcon was accepted")
        } catch let error as TokenizerError {
            #expect(error.code == .unsupported)
            #expect(error.message.contains("falcon"))
        }
    }
}
