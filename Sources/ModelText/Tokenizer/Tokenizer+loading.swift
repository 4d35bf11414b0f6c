import Foundation

extension Tokenizer {
    /// Loads `tokenizer.json` from a model directory.
    /// - Throws: ``TokenizerError`` naming the file problem or the unsupported feature.
    package convenience init(directory: URL) throws {
        try self.init(contentsOf: directory.appendingPathComponent("tokenizer.json"))
    }

    /// Loads a `tokenizer.json` file of at most ``JSONLimits/maxFileBytes``.
    package convenience init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try JSONLimits.readFile(url)
        } catch let error as JSONLimitError {
            throw TokenizerError(.invalidFile, error.message)
        } catch {
            throw TokenizerError(.invalidFile, "cannot read \(url.path): \(error)")
        }
        try self.init(json: data, source: url.lastPathComponent)
    }

    /// Parses the contents of a `tokenizer.json`.
    ///
    /// Supported (docs/builtin-engine.md, Tokenizer): model `BPE` (merges as `"a b"` strings or `["a", "b"]`
    /// pairs, `ignore_merges`, optional `unk_token`, `fuse_unk`, and `byte_fallback` for SentencePiece-style
    /// vocabularies); added tokens without `lstrip`/`rstrip`/`single_word`; and one of two text pipelines:
    /// - byte-level: normalizer none or `NFC`; pre-tokenizer `Sequence[Split(<Qwen2 or Llama 3 regex>,
    ///   Isolated), ByteLevel(add_prefix_space: false, use_regex: false)]`; decoder `ByteLevel`;
    /// - SentencePiece-style (no `ByteLevel` pre-tokenizer): normalizers `Prepend`, `Replace` (string
    ///   patterns), `NFC`, alone or in a `Sequence`; pre-tokenizer none or `Metaspace`; decoder `Metaspace`, or
    ///   a `Sequence` of `Replace`, `ByteFallback`, `Fuse` and `Strip` (leading spaces).
    /// The post-processor is read for ``specialTokenTemplate`` only (encoding never adds special tokens).
    /// Anything else fails with a ``TokenizerError/Code/unsupported`` error that names it.
    package convenience init(json data: Data, source: String = "tokenizer.json") throws {
        let root: [String: Any]
        do {
            guard let object = try JSONLimits.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError(.invalidFile, "\(source) is not a JSON object")
            }
            root = object
        } catch let error as TokenizerError {
            throw error
        } catch let error as JSONLimitError {
            throw TokenizerError(.invalidFile, "\(source): \(error.message)")
        } catch {
            throw TokenizerError(.invalidFile, "\(source) is not valid JSON: \(error)")
        }
        func unsupported(_ what: String) -> TokenizerError {
            TokenizerError(
                .unsupported,
                "\(source) uses \(what), which this engine does not support (supported: byte-level BPE as in Qwen2 and Llama 3, SentencePiece-style BPE as in Llama 2, Mistral and Gemma)"
            )
        }
        let preTokenizer = root["pre_tokenizer"] as? [String: Any]
        let preSteps = preTokenizer.map { $0["type"] as? String == "Sequence" ? $0["pretokenizers"] as? [[String: Any]] ?? [] : [$0] } ?? []
        let byteLevel = preSteps.contains { $0["type"] as? String == "ByteLevel" }
        let splitting =
            try byteLevel ? Self.byteLevelSplitting(root, preSteps, unsupported) : Self.sentencePieceSplitting(root, preSteps, unsupported)
        let decoding = try byteLevel ? Self.byteLevelDecoding(root, unsupported) : Self.sentencePieceDecoding(root, unsupported)
        /// A vocabulary string's bytes: byte-level strings stand for raw bytes, SentencePiece pieces are text.
        func pieceBytes(_ string: String) -> [UInt8]? {
            byteLevel ? ByteLevel.bytes(ofVocabularyString: string) : Array(string.utf8)
        }

        // Model.
        guard let model = root["model"] as? [String: Any] else {
            throw TokenizerError(.invalidFile, "\(source) has no \"model\" object")
        }
        let modelType = model["type"] as? String ?? "BPE"
        guard modelType == "BPE" else { throw unsupported("model type \(modelType)") }
        let byteFallback = model["byte_fallback"] as? Bool == true
        if byteFallback && byteLevel { throw unsupported("BPE byte_fallback with a ByteLevel pre-tokenizer") }
        if let dropout = model["dropout"] as? Double, dropout > 0 { throw unsupported("BPE dropout") }
        if let prefix = model["continuing_subword_prefix"] as? String, !prefix.isEmpty {
            throw unsupported("BPE continuing_subword_prefix")
        }
        if let suffix = model["end_of_word_suffix"] as? String, !suffix.isEmpty {
            throw unsupported("BPE end_of_word_suffix")
        }
        // Read from the bytes: a dictionary keyed by String would merge canonically equivalent pieces.
        guard model["vocab"] is [String: Any], let pairs = try VocabularyScanner.vocabulary(of: Array(data)) else {
            throw TokenizerError(.invalidFile, "\(source) has no model.vocab object")
        }
        var vocabulary: [[UInt8]: Int] = [:]
        vocabulary.reserveCapacity(pairs.count)
        for (string, id) in pairs {
            guard let bytes = pieceBytes(string) else {
                throw unsupported("a vocabulary entry outside the byte-level alphabet (\(string)) with a ByteLevel pre-tokenizer")
            }
            vocabulary[bytes] = id
        }

        guard let mergesArray = model["merges"] as? [Any] else {
            throw TokenizerError(.invalidFile, "\(source) has no model.merges array")
        }
        var merges: [([UInt8], [UInt8])] = []
        merges.reserveCapacity(mergesArray.count)
        for (index, entry) in mergesArray.enumerated() {
            let parts: [String]
            if let string = entry as? String {
                parts = string.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else if let pair = entry as? [Any], pair.count == 2, let left = pair[0] as? String, let right = pair[1] as? String {
                parts = [left, right]
            } else {
                throw TokenizerError(.invalidFile, "\(source): merge \(index) is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard parts.count == 2, let left = pieceBytes(parts[0]), let right = pieceBytes(parts[1]) else {
                throw TokenizerError(.invalidFile, "\(source): merge \(index) (\(entry)) is not two tokens")
            }
            merges.append((left, right))
        }
        var unknownID: Int?
        if let unknown = model["unk_token"] as? String {
            unknownID = pieceBytes(unknown).flatMap { vocabulary[$0] }
        }

        // Added tokens.
        var added: [AddedToken] = []
        for entry in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = (entry["id"] as? NSNumber)?.intValue, let content = entry["content"] as? String else {
                throw TokenizerError(.invalidFile, "\(source): an added token lacks id or content")
            }
            for flag in ["lstrip", "rstrip", "single_word"] where entry[flag] as? Bool == true {
                throw unsupported("\(flag) on added token \(content)")
            }
            added.append(AddedToken(id: id, content: content, special: entry["special"] as? Bool ?? false))
        }

        try self.init(
            vocabulary: vocabulary,
            merges: merges,
            addedTokens: added,
            splitting: splitting,
            ignoreMerges: model["ignore_merges"] as? Bool ?? false,
            unknownID: unknownID,
            byteFallback: byteFallback,
            fusesUnknown: model["fuse_unk"] as? Bool ?? false,
            decoding: decoding,
            specialTokenTemplate: try Self.specialTokenTemplate(root["post_processor"], source: source)
        )
    }

    /// The special tokens a `TemplateProcessing` post-processor (alone or in a `Sequence`) puts around a single
    /// text; `ByteLevel` adds none.
    /// - Throws: ``TokenizerError`` for another post-processor or a template naming an unknown token.
    static func specialTokenTemplate(_ processor: Any?, source: String) throws -> SpecialTokenTemplate {
        guard let processor = processor as? [String: Any] else { return SpecialTokenTemplate() }
        let steps = processor["type"] as? String == "Sequence" ? processor["processors"] as? [[String: Any]] ?? [] : [processor]
        var template = SpecialTokenTemplate()
        for step in steps {
            switch step["type"] as? String ?? "?" {
            case "ByteLevel":
                continue
            case "TemplateProcessing":
                let special = step["special_tokens"] as? [String: Any] ?? [:]
                var sawSequence = false
                for piece in step["single"] as? [[String: Any]] ?? [] {
                    if piece["Sequence"] != nil {
                        sawSequence = true
                    } else if let name = (piece["SpecialToken"] as? [String: Any])?["id"] as? String {
                        guard let ids = (special[name] as? [String: Any])?["ids"] as? [NSNumber] else {
                            throw TokenizerError(.invalidFile, "\(source): the post-processor names special token \(name) without ids")
                        }
                        if sawSequence { template.suffix += ids.map(\.intValue) } else { template.prefix += ids.map(\.intValue) }
                    }
                }
            case let type:
                throw TokenizerError(.unsupported, "\(source) uses post-processor \(type), which this engine does not support")
            }
        }
        return template
    }

    private typealias Unsupported = (String) -> TokenizerError

    /// The normalizer's steps (a single one or a `Sequence`).
    private static func normalizerSteps(_ root: [String: Any]) -> [[String: Any]] {
        guard let normalizer = root["normalizer"] as? [String: Any] else { return [] }
        return normalizer["type"] as? String == "Sequence" ? normalizer["normalizers"] as? [[String: Any]] ?? [] : [normalizer]
    }

    /// A `Replace` step's string pattern and content (normalizer or decoder).
    private static func replacement(_ step: [String: Any], _ unsupported: Unsupported) throws -> (pattern: [UInt8], content: [UInt8]) {
        guard let pattern = (step["pattern"] as? [String: Any])?["String"] as? String, !pattern.isEmpty,
            let content = step["content"] as? String
        else {
            throw unsupported("a Replace whose pattern is not a non-empty string (\(step["pattern"] ?? "none"))")
        }
        return (Array(pattern.utf8), Array(content.utf8))
    }

    /// NFC and the split regex, then ByteLevel: the Qwen2 and Llama 3 pipeline.
    private static func byteLevelSplitting(_ root: [String: Any], _ steps: [[String: Any]], _ unsupported: Unsupported) throws -> Splitting {
        var normalizesNFC = false
        for step in normalizerSteps(root) {
            let type = step["type"] as? String ?? "?"
            guard type == "NFC" else { throw unsupported("normalizer \(type)") }
            normalizesNFC = true
        }
        var pattern: SplitPattern?
        var sawByteLevel = false
        for step in steps {
            let type = step["type"] as? String ?? "?"
            switch type {
            case "Split":
                guard pattern == nil, !sawByteLevel else { throw unsupported("a pre-tokenizer Sequence other than Split then ByteLevel") }
                guard let regex = (step["pattern"] as? [String: Any])?["Regex"] as? String else {
                    throw unsupported("a Split pattern that is not a regex (\(step["pattern"] ?? "none"))")
                }
                guard let known = SplitPattern.known[regex] else {
                    throw unsupported("Split pattern \(regex) (only the Qwen2 and Llama 3 regexes are implemented)")
                }
                guard step["behavior"] as? String == "Isolated" else { throw unsupported("Split behavior \(step["behavior"] ?? "?")") }
                guard step["invert"] as? Bool != true else { throw unsupported("Split invert") }
                pattern = known
            case "ByteLevel":
                guard !sawByteLevel else { throw unsupported("two ByteLevel pre-tokenizers") }
                if step["add_prefix_space"] as? Bool == true { throw unsupported("ByteLevel add_prefix_space") }
                if step["use_regex"] as? Bool ?? true { throw unsupported("ByteLevel use_regex (the GPT-2 regex)") }
                sawByteLevel = true
            default:
                throw unsupported("pre-tokenizer \(type)")
            }
        }
        guard let pattern, sawByteLevel else { throw unsupported("a pre-tokenizer other than Split then ByteLevel") }
        return .byteLevel(pattern, nfc: normalizesNFC)
    }

    private static func byteLevelDecoding(_ root: [String: Any], _ unsupported: Unsupported) throws -> DecodingRules {
        if let decoder = root["decoder"] as? [String: Any] {
            let type = decoder["type"] as? String ?? "?"
            guard type == "ByteLevel" else { throw unsupported("decoder \(type) with a ByteLevel pre-tokenizer") }
        }
        return DecodingRules()
    }

    /// Normalizers, then an optional Metaspace: the Llama 2, Mistral and Gemma pipelines.
    private static func sentencePieceSplitting(_ root: [String: Any], _ steps: [[String: Any]], _ unsupported: Unsupported) throws -> Splitting {
        var normalizers: [SentencePieceText.Step] = []
        for step in normalizerSteps(root) {
            switch step["type"] as? String ?? "?" {
            case "Replace":
                let (pattern, content) = try replacement(step, unsupported)
                normalizers.append(.replace(pattern: pattern, content: content))
            case "Prepend":
                guard let prefix = step["prepend"] as? String else { throw unsupported("a Prepend normalizer without a string") }
                normalizers.append(.prepend(Array(prefix.utf8)))
            case "NFC":
                normalizers.append(.nfc)
            case let type:
                throw unsupported("normalizer \(type)")
            }
        }
        var metaspace: SentencePieceText.Metaspace?
        for step in steps {
            let type = step["type"] as? String ?? "?"
            guard type == "Metaspace", metaspace == nil else { throw unsupported("pre-tokenizer \(type)") }
            metaspace = try Self.metaspace(step, unsupported)
        }
        return .sentencePiece(SentencePieceText(steps: normalizers, metaspace: metaspace))
    }

    private static func metaspace(_ step: [String: Any], _ unsupported: Unsupported) throws -> SentencePieceText.Metaspace {
        guard let replacement = step["replacement"] as? String, !replacement.isEmpty else {
            throw unsupported("a Metaspace without a replacement character")
        }
        // Older files say `add_prefix_space` instead of `prepend_scheme`.
        let schemeName = step["prepend_scheme"] as? String ?? (step["add_prefix_space"] as? Bool == false ? "never" : "always")
        guard let scheme = SentencePieceText.Metaspace.PrependScheme(rawValue: schemeName) else {
            throw unsupported("Metaspace prepend_scheme \(schemeName)")
        }
        return SentencePieceText.Metaspace(replacement: Array(replacement.utf8), prependScheme: scheme, split: step["split"] as? Bool ?? true)
    }

    private static func sentencePieceDecoding(_ root: [String: Any], _ unsupported: Unsupported) throws -> DecodingRules {
        var rules = DecodingRules()
        guard let decoder = root["decoder"] as? [String: Any] else { return rules }
        let type = decoder["type"] as? String ?? "?"
        if type == "Metaspace" {
            let metaspace = try Self.metaspace(decoder, unsupported)
            rules.replacements = [(metaspace.replacement, [0x20])]
            rules.dropsFirstTokenSpaces = metaspace.prependScheme != .never
            return rules
        }
        let steps = type == "Sequence" ? decoder["decoders"] as? [[String: Any]] ?? [] : [decoder]
        // Replace and ByteFallback act on each token, so they may come in any order before Fuse; Strip after Fuse
        // acts on the whole text.
        var fused = false
        for step in steps {
            switch step["type"] as? String ?? "?" {
            case "Replace" where !fused:
                rules.replacements.append(try replacement(step, unsupported))
            case "ByteFallback" where !fused:
                rules.byteFallback = true
            case "Fuse":
                fused = true
            case "Strip" where fused && rules.stripsLeadingSpaces == 0:
                guard step["content"] as? String == " ", (step["stop"] as? NSNumber)?.intValue ?? 0 == 0,
                    let start = (step["start"] as? NSNumber)?.intValue, start >= 0
                else {
                    throw unsupported("a Strip decoder other than leading spaces")
                }
                rules.stripsLeadingSpaces = start
            case let type:
                throw unsupported("decoder \(type) in this position of the decoder Sequence")
            }
        }
        return rules
    }
}
