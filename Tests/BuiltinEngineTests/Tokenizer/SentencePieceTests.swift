import Foundation
import ModelText
import Testing

/// Llama 2's vocabulary under the text pipelines of Llama 2/Mistral, transformers' Metaspace conversion and Gemma,
/// against the `tokenizers` package (scripts/make-spm-goldens.py).
@Suite("SentencePiece-style BPE against the tokenizers package")
struct SentencePieceTests {
    static let variants = ["legacy", "metaspace", "metaspace-split", "gemma"]

    struct Goldens: Decodable {
        var corpus: [String]
        var merges: Int
        var variants: [String: Variant]
    }

    struct Variant: Decodable {
        var ids: [[Int]]
        var decoded: [String]
        var decoded_skip_special: [String]
    }

    static let goldens: Result<Goldens, any Error> = Result { try TextFixtures.json("spm/goldens.json", as: Goldens.self) }
    static let baseData: Result<Data, any Error> = Result { try Data(contentsOf: TextFixtures.url("spm/tokenizer.json")) }

    /// The fixture's tokenizer.json as an object to edit.
    static func base() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: baseData.get())
        return try #require(object as? [String: Any])
    }

    /// The fixture's tokenizer.json with the variant's normalizer, pre-tokenizer and decoder from the goldens file,
    /// spliced in as text: the file ends with those three keys, and a round trip through a dictionary would merge
    /// canonically equivalent pieces of the vocabulary (what ``VocabularyScanner`` exists for).
    static func tokenizer(_ variant: String) throws -> Tokenizer {
        let text = String(decoding: try baseData.get(), as: UTF8.self)
        let cut = try #require(text.range(of: #","normalizer":"#, options: .backwards))
        let raw = try JSONSerialization.jsonObject(with: Data(contentsOf: TextFixtures.url("spm/goldens.json"))) as? [String: Any]
        let variants = try #require(raw?["variants"] as? [String: Any])
        let config = try #require(variants[variant] as? [String: Any])
        var spliced = String(text[..<cut.lowerBound])
        for key in ["normalizer", "pre_tokenizer", "decoder"] {
            let value = String(
                decoding: try JSONSerialization.data(withJSONObject: config[key] ?? NSNull(), options: .fragmentsAllowed), as: UTF8.self)
            spliced += ",\"\(key)\":\(value)"
        }
        return try Tokenizer(json: Data((spliced + "}").utf8))
    }

    @Test("the real vocabulary loads with every merge and byte-fallback token")
    func loads() throws {
        let tokenizer = try Self.tokenizer("legacy")
        let goldens = try Self.goldens.get()
        #expect(goldens.merges > 60_000)
        #expect(tokenizer.mergeCount == goldens.merges)
        #expect(tokenizer.vocabularySize == 32_000)
        #expect(goldens.corpus.count > 200)
    }

    @Test("ids equal the tokenizers package on the whole corpus", arguments: variants)
    func corpusIDs(variant: String) throws {
        let tokenizer = try Self.tokenizer(variant)
        let goldens = try Self.goldens.get()
        let golden = try #require(goldens.variants[variant])
        var mismatches: [String] = []
        var fallbacks = 0
        for (text, expected) in zip(goldens.corpus, golden.ids) {
            let ids = try tokenizer.encode(text)
            if ids != expected { mismatches.append("\(text.debugDescription): got \(ids) want \(expected)") }
            // Ids 3...258 are Llama 2's <0x00>...<0xFF>.
            if ids.contains(where: { (3...258).contains($0) }) { fallbacks += 1 }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) mismatches:\n\(mismatches.prefix(5).joined(separator: "\n"))")
        // Byte fallback is exercised, not just possible.
        #expect(fallbacks > 50)
    }

    @Test("decoding and streamed decoding equal the tokenizers package", arguments: variants)
    func decoding(variant: String) throws {
        let tokenizer = try Self.tokenizer(variant)
        let goldens = try Self.goldens.get()
        let golden = try #require(goldens.variants[variant])
        for index in goldens.corpus.indices {
            let ids = golden.ids[index]
            let text = goldens.corpus[index].debugDescription
            #expect(try tokenizer.decode(ids) == golden.decoded[index], "\(text)")
            #expect(try tokenizer.decode(ids, skipSpecialTokens: true) == golden.decoded_skip_special[index], "\(text)")
            for skip in [false, true] {
                var decoder = tokenizer.streamingDecoder(skipSpecialTokens: skip)
                var streamed = ""
                for id in ids { streamed += try decoder.feed(id) }
                streamed += decoder.finish()
                #expect(streamed == (skip ? golden.decoded_skip_special[index] : golden.decoded[index]), "\(text)")
            }
        }
    }

    @Test("Llama 2 decoding gives back the text, byte fallback included")
    func roundTrip() throws {
        let tokenizer = try Self.tokenizer("legacy")
        for text in ["Hello world", "  two leading spaces", "emoji 🦙 and 𝔘𝔫𝔦", "tabs\tand\nnewlines"] {
            let ids = try tokenizer.encode(text)
            #expect(try tokenizer.decode(ids) == text)
        }
        // 🦙 is not in the vocabulary: four byte tokens that the streamed decoder holds until the last.
        let llama = try tokenizer.encode("🦙")
        #expect(llama == [29871, 243, 162, 169, 156])
        var decoder = tokenizer.streamingDecoder()
        #expect(try llama.dropLast().map { try decoder.feed($0) }.joined() == "")
        #expect(try decoder.feed(llama.last!) == "🦙")
    }

    @Test("a character with neither a piece nor byte tokens becomes one fused unknown token")
    func unknownFused() throws {
        var object = try Self.base()
        var model = try #require(object["model"] as? [String: Any])
        model["byte_fallback"] = false
        object["model"] = model
        let tokenizer = try Tokenizer(json: JSONSerialization.data(withJSONObject: object))
        #expect(try tokenizer.encode("a🦙🦙b") == [263, 0, 29890])
    }

    @Test("unsupported SentencePiece features are named")
    func unsupported() throws {
        let cases: [(String, Any, String)] = [
            ("normalizer", ["type": "NFKC"], "normalizer NFKC"),
            ("normalizer", ["type": "Replace", "pattern": ["Regex": " +"], "content": "▁"], "Replace whose pattern"),
            ("pre_tokenizer", ["type": "Whitespace"], "pre-tokenizer Whitespace"),
            ("decoder", ["type": "Sequence", "decoders": [["type": "Fuse"], ["type": "ByteFallback"]]], "decoder ByteFallback"),
            ("decoder", ["type": "Sequence", "decoders": [["type": "Fuse"], ["type": "Strip", "content": " ", "start": 0, "stop": 1]]], "Strip"),
            ("post_processor", ["type": "RobertaProcessing"], "post-processor RobertaProcessing"),
        ]
        for (key, value, expected) in cases {
            var object = try Self.base()
            object[key] = value
            do {
                _ = try Tokenizer(json: JSONSerialization.data(withJSONObject: object))
                Issue.record("\(key) \(value) was accepted")
            } catch let error as TokenizerError {
                #expect(error.code == .unsupported)
                #expect(error.description.contains(expected), "\(error)")
            }
        }
    }

    @Test("the post-processor's special tokens are read for encodeWithSpecialTokens")
    func specialTokenTemplate() throws {
        var object = try Self.base()
        object["post_processor"] = [
            "type": "TemplateProcessing",
            "single": [
                ["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                ["SpecialToken": ["id": "</s>", "type_id": 0]],
            ],
            "pair": [],
            "special_tokens": ["<s>": ["id": "<s>", "ids": [1], "tokens": ["<s>"]], "</s>": ["id": "</s>", "ids": [2], "tokens": ["</s>"]]],
        ]
        let tokenizer = try Tokenizer(json: JSONSerialization.data(withJSONObject: object))
        #expect(tokenizer.specialTokenTemplate == Tokenizer.SpecialTokenTemplate(prefix: [1], suffix: [2]))
        #expect(try tokenizer.encodeWithSpecialTokens("Hello") == [1] + (try tokenizer.encode("Hello")) + [2])
    }
}

@Suite("SentencePiece BPE from a GGUF file")
struct SentencePieceGGUFTests {
    static let tokenizer: Result<Tokenizer, any Error> = Result {
        try Tokenizer(gguf: GGUFFile(url: TextFixtures.url("spm/ggml-vocab-llama-spm.gguf")))
    }

    @Test("merges derived from the scores are transformers' conversion of the same file")
    func merges() throws {
        let goldens = try SentencePieceTests.goldens.get()
        #expect(try Self.tokenizer.get().mergeCount == goldens.merges)
        #expect(try Self.tokenizer.get().vocabularySize == 32_000)
    }

    @Test("ids and decoded text equal the tokenizers package's Llama 2 pipeline on the whole corpus")
    func corpus() throws {
        let tokenizer = try Self.tokenizer.get()
        let goldens = try SentencePieceTests.goldens.get()
        let golden = try #require(goldens.variants["legacy"])
        var mismatches: [String] = []
        for (index, text) in goldens.corpus.enumerated() {
            let ids = try tokenizer.encode(text)
            if ids != golden.ids[index] { mismatches.append("\(text.debugDescription): got \(ids) want \(golden.ids[index])") }
            #expect(try tokenizer.decode(golden.ids[index], skipSpecialTokens: true) == golden.decoded_skip_special[index])
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) mismatches:\n\(mismatches.prefix(5).joined(separator: "\n"))")
    }
}
