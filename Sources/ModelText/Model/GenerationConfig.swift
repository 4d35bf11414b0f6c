import Foundation

/// The defaults a model ships in `generation_config.json`: stop ids and sampling settings.
package struct GenerationConfig: Sendable, Equatable {
    package var eosTokenIds: [Int32]
    package var bosTokenId: Int32?
    package var temperature: Float?
    package var topP: Float?
    package var topK: Int?
    package var minP: Float?
    package var repetitionPenalty: Float?
    package var doSample: Bool?

    package init(
        eosTokenIds: [Int32] = [], bosTokenId: Int32? = nil, temperature: Float? = nil, topP: Float? = nil,
        topK: Int? = nil, minP: Float? = nil, repetitionPenalty: Float? = nil, doSample: Bool? = nil
    ) {
        self.eosTokenIds = eosTokenIds
        self.bosTokenId = bosTokenId
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.doSample = doSample
    }

    /// Reads `generation_config.json` from `directory`, falling back to `config.json`'s
    /// `eos_token_id` when the file is absent (as transformers does).
    package init(directory: URL) throws {
        let url = directory.appendingPathComponent("generation_config.json")
        let fallback = directory.appendingPathComponent("config.json")
        let source = FileManager.default.fileExists(atPath: url.path) ? url : fallback
        guard let data = try? JSONLimits.readFile(source) else {
            self.init()
            return
        }
        guard let object = (try? JSONLimits.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError(.invalidConfig, "\(source.lastPathComponent) is not a JSON object")
        }
        func ids(_ value: Any?) -> [Int32] {
            if let one = value as? Int { return Int32(exactly: one).map { [$0] } ?? [] }
            if let many = value as? [Int] { return many.compactMap { Int32(exactly: $0) } }
            return []
        }
        func float(_ key: String) -> Float? {
            (object[key] as? Double).map(Float.init) ?? (object[key] as? Int).map(Float.init)
        }
        self.init(
            eosTokenIds: ids(object["eos_token_id"]),
            bosTokenId: ids(object["bos_token_id"]).first,
            temperature: source == url ? float("temperature") : nil,
            topP: source == url ? float("top_p") : nil,
            topK: source == url ? object["top_k"] as? Int : nil,
            minP: source == url ? float("min_p") : nil,
            repetitionPenalty: source == url ? float("repetition_penalty") : nil,
            doSample: source == url ? object["do_sample"] as? Bool : nil
        )
    }
}
