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
    /// Supported: model `BPE` (merges as `"a b"` strings or `["a", "b"]` pairs, `ignore_merges`,
    /// optional `unk_token`); normalizer none or `NFC`; pre-tokenizer `Sequence[Split(<Qwen2 or Llama 3
    /// regex>, Isolated), ByteLevel(add_prefix_space: false, use_regex: false)]`; decoder `ByteLevel`;
    /// added tokens without `lstrip`/`rstrip`/`single_word`. The post-processor is ignored (encoding
    /// never adds special tokens). Anything else fails with a ``TokenizerError/Code/unsupported`` error
    /// that names it.
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
                .unsupported, "\(source) uses \(what), which this engine does not support (supported: byte-level BPE as in Qwen2 and Llama 3)")
        }

        // Model.
        guard let model = root["model"] as? [String: Any] else {
            throw TokenizerError(.invalidFile, "\(source) has no \"model\" object")
        }
        let modelType = model["type"] as? String ?? "BPE"
        guard modelType == "BPE" else { throw unsupported("model type \(modelType)") }
        if model["byte_fallback"] as? Bool == true { throw unsupported("BPE byte_fallback") }
        if let dropout = model["dropout"] as? Double, dropout > 0 { throw unsupported("BPE dropout") }
        if let prefix = model["continuing_subword_prefix"] as? String, !prefix.isEmpty {
            throw unsupported("BPE continuing_subword_prefix")
        }
        if let suffix = model["end_of_word_suffix"] as? String, !suffix.isEmpty {
            throw unsupported("BPE end_of_word_suffix")
        }
        guard let vocabularyObject = model["vocab"] as? [String: Any] else {
            throw TokenizerError(.invalidFile, "\(source) has no model.vocab object")
        }
        var vocabulary: [[UInt8]: Int] = [:]
        vocabulary.reserveCapacity(vocabularyObject.count)
        for (string, value) in vocabularyObject {
            guard let id = (value as? NSNumber)?.intValue else {
                throw TokenizerError(.invalidFile, "\(source): vocabulary entry \(string) has no integer id")
            }
            guard let bytes = ByteLevel.bytes(ofVocabularyString: string) else {
                throw unsupported("a vocabulary entry outside the byte-level alphabet (\(string)); not a byte-level BPE")
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
            guard parts.count == 2, let left = ByteLevel.bytes(ofVocabularyString: parts[0]),
                let right = ByteLevel.bytes(ofVocabularyString: parts[1])
            else {
                throw TokenizerError(.invalidFile, "\(source): merge \(index) (\(entry)) is not two byte-level tokens")
            }
            merges.append((left, right))
        }
        var unknownID: Int?
        if let unknown = model["unk_token"] as? String {
            unknownID = ByteLevel.bytes(ofVocabularyString: unknown).flatMap { vocabulary[$0] }
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

        // Normalizer.
        var normalizesNFC = false
        if let normalizer = root["normalizer"] as? [String: Any] {
            let steps = normalizer["type"] as? String == "Sequence" ? normalizer["normalizers"] as? [[String: Any]] ?? [] : [normalizer]
            for step in steps {
                let type = step["type"] as? String ?? "?"
                guard type == "NFC" else { throw unsupported("normalizer \(type)") }
                normalizesNFC = true
            }
        }

        // Pre-tokenizer.
        guard let preTokenizer = root["pre_tokenizer"] as? [String: Any] else {
            throw unsupported("no pre_tokenizer")
        }
        let steps = preTokenizer["type"] as? String == "Sequence" ? preTokenizer["pretokenizers"] as? [[String: Any]] ?? [] : [preTokenizer]
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

        // Decoder.
        if let decoder = root["decoder"] as? [String: Any] {
            let type = decoder["type"] as? String ?? "?"
            guard type == "ByteLevel" else { throw unsupported("decoder \(type)") }
        }

        try self.init(
            vocabulary: vocabulary,
            merges: merges,
            addedTokens: added,
            pattern: pattern,
            normalizesNFC: normalizesNFC,
            ignoreMerges: model["ignore_merges"] as? Bool ?? false,
            unknownID: unknownID
        )
    }
}
