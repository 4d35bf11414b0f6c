import Foundation
import ModelText
import Testing

@Suite("Tokenizer against the tokenizers package")
struct TokenizerTests {
    static let names = ["qwen2", "llama3", "small"]

    @Test("fixtures are present", arguments: names)
    func fixturesPresent(name: String) throws {
        #expect(TextFixtures.corpus.count > 80)
        let golden = try #require(TextFixtures.encodings[name])
        #expect(golden.ids.count == TextFixtures.corpus.count)
    }

    @Test("the loader reads every merge", arguments: names)
    func mergeCount(name: String) throws {
        let tokenizer = try TextFixtures.tokenizer(name)
        let golden = try #require(TextFixtures.encodings[name])
        #expect(golden.merges > 100)
        #expect(tokenizer.mergeCount == golden.merges)
        #expect(tokenizer.vocabularySize == golden.vocab_size)
    }

    @Test("real vocabularies have the expected merge counts")
    func realMergeCounts() throws {
        // The counts of the GGUF files themselves, independent of the goldens script.
        #expect(try TextFixtures.tokenizer("qwen2").mergeCount == 151_387)
        #expect(try TextFixtures.tokenizer("llama3").mergeCount == 280_147)
    }

    @Test("ids equal the tokenizers package on the whole corpus", arguments: names)
    func corpusIDs(name: String) throws {
        let tokenizer = try TextFixtures.tokenizer(name)
        let golden = try #require(TextFixtures.encodings[name])
        var mismatches: [String] = []
        for (text, expected) in zip(TextFixtures.corpus, golden.ids) {
            let ids = try tokenizer.encode(text)
            if ids != expected { mismatches.append("\(text.debugDescription): got \(ids) want \(expected)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) mismatches:\n\(mismatches.prefix(5).joined(separator: "\n"))")
    }

    @Test("ids equal the tokenizers package on a large text", arguments: ["qwen2", "llama3"])
    func bigText(name: String) throws {
        let tokenizer = try TextFixtures.tokenizer(name)
        let text = try String(contentsOf: TextFixtures.url("big.txt"), encoding: .utf8)
        let golden = try TextFixtures.json("big-ids.json", as: [String: [Int]].self)
        let expected = try #require(golden[name])
        let clock = ContinuousClock()
        var ids: [Int] = []
        let elapsed = try clock.measure { ids = try tokenizer.encode(text) }
        #expect(ids.count == expected.count)
        if let first = zip(ids, expected).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
            Issue.record("first difference at token \(first.offset)")
        }
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        print(
            "encode speed \(name): \(ids.count) tokens, \(text.utf8.count) bytes in \(seconds) s = \(Int(Double(ids.count) / seconds)) tokens/s (cold cache)"
        )
        let warm = try clock.measure { ids = try tokenizer.encode(text) }
        let warmSeconds = Double(warm.components.seconds) + Double(warm.components.attoseconds) * 1e-18
        print("encode speed \(name): \(Int(Double(ids.count) / warmSeconds)) tokens/s (warm cache)")
    }

    @Test("decode round-trips the corpus and skips special tokens like tokenizers", arguments: names)
    func roundTrip(name: String) throws {
        let tokenizer = try TextFixtures.tokenizer(name)
        let golden = try #require(TextFixtures.encodings[name])
        for (index, text) in TextFixtures.corpus.enumerated() {
            let ids = golden.ids[index]
            let decoded = try tokenizer.decode(ids)
            // NFC-normalizing tokenizers give back the normalized text.
            let expected = name == "qwen2" ? text.precomposedStringWithCanonicalMapping : text
            #expect(Array(decoded.utf8) == Array(expected.utf8), "\(text.debugDescription)")
            let skipped = try tokenizer.decode(ids, skipSpecialTokens: true)
            #expect(Array(skipped.utf8) == Array(golden.decoded_skip_special[index].utf8), "\(text.debugDescription)")
        }
    }

    @Test("streaming decode never splits a character and matches the full decode", arguments: names)
    func streaming(name: String) throws {
        let tokenizer = try TextFixtures.tokenizer(name)
        let golden = try #require(TextFixtures.encodings[name])
        var splitCharacters = 0
        for (text, ids) in zip(TextFixtures.corpus, golden.ids) {
            // Half a character would decode as U+FFFD; the corpus has one real U+FFFD, in a known string.
            let textHasReplacement = text.unicodeScalars.contains("\u{FFFD}")
            var decoder = tokenizer.streamingDecoder()
            var pieces: [String] = []
            for id in ids {
                let piece = try decoder.feed(id)
                #expect(
                    textHasReplacement || !piece.unicodeScalars.contains("\u{FFFD}"),
                    "a piece of \(text.debugDescription) holds a replacement character")
                pieces.append(piece)
                // A token that ends inside a character makes the decoder hold bytes back.
                if piece.isEmpty, try !tokenizer.decodeBytes([id]).isEmpty { splitCharacters += 1 }
            }
            pieces.append(decoder.finish())
            #expect(pieces.joined() == (try tokenizer.decode(ids)))
        }
        // The corpus has emoji and CJK split across tokens; the test would prove nothing otherwise.
        #expect(splitCharacters > 0)
    }

    @Test("a token ending inside a character is held, then flushed as U+FFFD at the end")
    func streamingFinish() throws {
        let tokenizer = try TextFixtures.tokenizer("qwen2")
        // A corpus token that starts a multi-byte character but does not finish it.
        let golden = try #require(TextFixtures.encodings["qwen2"])
        let partial = try golden.ids.joined().first { id in
            let bytes = try tokenizer.decodeBytes([id])
            return bytes.first.map { $0 >= 0xC2 } == true && StreamingDecoder.completePrefixLength(bytes) == 0
        }
        let id = try #require(partial)
        var decoder = tokenizer.streamingDecoder()
        #expect(try decoder.feed(id) == "")
        #expect(decoder.finish() == "\u{FFFD}")
        #expect(decoder.finish() == "")
    }

    @Test("both merge formats are exercised on real vocabularies", arguments: [("qwen2", true), ("llama3", false)])
    func mergeFormats(name: String, stringMerges: Bool) throws {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: TextFixtures.url("\(name)/tokenizer.json"))) as? [String: Any]
        let merges = try #require((object?["model"] as? [String: Any])?["merges"] as? [Any])
        #expect((merges.first is String) == stringMerges)
        #expect((merges.first is [Any]) == !stringMerges)
    }

    @Test("streaming with skipSpecialTokens drops special tokens only")
    func streamingSkipsSpecial() throws {
        let tokenizer = try TextFixtures.tokenizer("qwen2")
        let text = "<|im_start|>user\n你好 🤗<tool_call><|im_end|>"
        let ids = try tokenizer.encode(text)
        var decoder = tokenizer.streamingDecoder(skipSpecialTokens: true)
        var streamed = ""
        for id in ids { streamed += try decoder.feed(id) }
        streamed += decoder.finish()
        #expect(streamed == "user\n你好 🤗<tool_call>")
        #expect(streamed == (try tokenizer.decode(ids, skipSpecialTokens: true)))
    }

    @Test("added tokens are matched on raw text, longest first")
    func addedTokens() throws {
        let qwen = try TextFixtures.tokenizer("qwen2")
        let imStart = try #require(qwen.addedTokenID("<|im_start|>"))
        let toolCall = try #require(qwen.addedTokenID("<tool_call>"))
        #expect(qwen.isSpecial(imStart))
        #expect(!qwen.isSpecial(toolCall))
        let ids = try qwen.encode("a<|im_start|>\u{301}b<tool_call>")
        #expect(ids.contains(imStart))
        #expect(ids.last == toolCall)
        // A partial token is plain text.
        #expect(!(try qwen.encode("<|im_start|")).contains(imStart))
        // skip_special_tokens drops special tokens only.
        #expect(try qwen.decode([imStart, toolCall], skipSpecialTokens: true) == "<tool_call>")
        #expect(try qwen.decode([imStart, toolCall]) == "<|im_start|><tool_call>")
    }

    @Test("longest added token wins over a prefix")
    func longestFirst() throws {
        let matcher = AddedTokenMatcher(tokens: [("<a>", 1), ("<a><b>", 2), ("<b>", 3)])
        #expect(matcher.segments(Array("x<a><b><a>".utf8)) == [.text(0..<1), .token(2), .token(1)])
    }

    @Test("unknown ids are a clear error")
    func unknownID() throws {
        let tokenizer = try TextFixtures.tokenizer("small")
        #expect(throws: TokenizerError.self) { try tokenizer.decode([10_000_000]) }
    }

    @Test("unsupported tokenizer.json features are named")
    func unsupportedFeatures() throws {
        let base = try String(contentsOf: TextFixtures.url("small/tokenizer.json"), encoding: .utf8)
        let cases: [(String, String, String)] = [
            (#""type":"BPE""#, #""type":"WordPiece""#, "model type WordPiece"),
            (#""byte_fallback":false"#, #""byte_fallback":true"#, "byte_fallback"),
            (#""use_regex":false"#, #""use_regex":true"#, "use_regex"),
            (#""behavior":"Isolated""#, #""behavior":"Removed""#, "Split behavior"),
            (#""normalizer":null"#, #""normalizer":{"type":"NFKC"}"#, "normalizer NFKC"),
        ]
        for (old, new, expected) in cases {
            #expect(base.contains(old), "fixture lacks \(old)")
            let json = base.replacingOccurrences(of: old, with: new)
            do {
                _ = try Tokenizer(json: Data(json.utf8))
                Issue.record("\(new) was accepted")
            } catch let error as TokenizerError {
                #expect(error.code == .unsupported)
                #expect(error.description.contains(expected), "\(error)")
            }
        }
    }

    @Test("zero merges fail the merge-count check")
    func zeroMerges() throws {
        var object = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: TextFixtures.url("small/tokenizer.json"))) as? [String: Any])
        var model = try #require(object["model"] as? [String: Any])
        model["merges"] = [Any]()
        object["model"] = model
        let tokenizer = try Tokenizer(json: JSONSerialization.data(withJSONObject: object))
        #expect(tokenizer.mergeCount == 0)
        #expect(tokenizer.mergeCount != TextFixtures.encodings["small"]?.merges)
    }
}
