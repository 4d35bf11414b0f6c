import EngineCompute
import Foundation
import Hummingbird
import ModelText
import NIOCore

/// `POST /v1/embeddings` body, OpenAI's shape: `input` is a string, a list of strings, a list of token ids or a
/// list of such lists.
struct EmbeddingFields: Decodable {
    var model: String?
    var input: EmbeddingInput
    var encodingFormat: String?
    var dimensions: Int?

    enum CodingKeys: String, CodingKey {
        case model, input, dimensions
        case encodingFormat = "encoding_format"
    }
}

/// The inputs of one embeddings request, each text or token ids.
struct EmbeddingInput: Decodable {
    enum Item {
        case text(String)
        case tokens([Int])
    }

    var items: [Item]

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            items = [.text(text)]
        } else if let texts = try? container.decode([String].self) {
            items = texts.map(Item.text)
        } else if let tokens = try? container.decode([Int].self) {
            items = [.tokens(tokens)]
        } else if let lists = try? container.decode([[Int]].self) {
            items = lists.map(Item.tokens)
        } else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "input must be a string, a list of strings, a list of token ids or a list of such lists")
        }
    }
}

extension EngineRuntime {
    /// Inputs run through the model together in one forward pass, up to this many tokens in all.
    static let embeddingBatchTokens = 8192

    /// Embeds each token sequence with the model's pooling, batching sequences into forward passes on the
    /// scheduler's thread (between generation steps).
    /// - Throws: ``EngineRequestError`` when the model is not an embedding model; ``ModelError`` from the model.
    func embed(_ sequences: [[Int32]], dimensions: Int?) async throws -> [[Float]] {
        guard let pooling else { throw EngineRequestError("\(servedName) is not an embedding model (it has no sentence-transformers modules.json)") }
        let model = generator.model
        var batches: [[[Int32]]] = [[]]
        var tokens = 0
        for sequence in sequences {
            if tokens + sequence.count > Self.embeddingBatchTokens, !batches[batches.count - 1].isEmpty {
                batches.append([])
                tokens = 0
            }
            batches[batches.count - 1].append(sequence)
            tokens += sequence.count
        }
        var vectors: [[Float]] = []
        vectors.reserveCapacity(sequences.count)
        for batch in batches where !batch.isEmpty {
            try Task.checkCancellation()
            vectors += try await scheduler.perform {
                var segments = batch.map { tokens in
                    ForwardSegment(cache: model.makeCache(capacity: tokens.count), tokens: tokens, logits: pooling.mode == .mean ? .all : .last)
                }
                if pooling.mode == .first {
                    // The first token's state needs no later token (attention is causal): run it alone.
                    for index in segments.indices { segments[index].tokens = [segments[index].tokens[0]] }
                }
                let rows = try model.forward(segments, output: .hiddenStates)
                return rows.map { pooling.embedding(rows: $0, dimensions: dimensions) }
            }
        }
        return vectors
    }
}

extension EngineServer {
    /// `POST /v1/embeddings`: one vector per input, in order, with the token count as `usage.prompt_tokens`.
    func embeddings(_ request: Request) async throws -> Response {
        let fields = try decodeFields(EmbeddingFields.self, try await Self.body(of: request))
        if let model = fields.model, model != runtime.servedName {
            throw EngineRequestError("The model `\(model)` does not exist. This server serves `\(runtime.servedName)`.", param: "model")
        }
        guard let pooling = runtime.pooling else {
            throw EngineRequestError("\(runtime.servedName) is not an embedding model, so it does not support the embeddings API", param: "model")
        }
        let base64: Bool
        switch fields.encodingFormat ?? "float" {
        case "float": base64 = false
        case "base64": base64 = true
        case let other: throw EngineRequestError("encoding_format must be float or base64, not \(other)", param: "encoding_format")
        }
        let width = runtime.generator.model.config.hiddenSize
        if let dimensions = fields.dimensions {
            guard pooling.matryoshka else {
                throw EngineRequestError(
                    "\(runtime.servedName) does not support matryoshka representation, so dimensions cannot be changed", param: "dimensions")
            }
            guard (1...width).contains(dimensions) else {
                throw EngineRequestError("dimensions must be between 1 and \(width)", param: "dimensions")
            }
        }
        guard !fields.input.items.isEmpty else { throw EngineRequestError("input must not be empty", param: "input") }
        let vocab = runtime.generator.model.config.vocabSize
        let sequences: [[Int32]] = try fields.input.items.map { item in
            let ids: [Int]
            switch item {
            case .text(let text): ids = try runtime.tokenizer.encodeWithSpecialTokens(text)
            case .tokens(let tokens): ids = tokens
            }
            guard !ids.isEmpty else { throw EngineRequestError("each input must have at least one token", param: "input") }
            if let bad = ids.first(where: { $0 < 0 || $0 >= vocab }) {
                throw EngineRequestError("token id \(bad) is outside the vocabulary of \(vocab)", param: "input")
            }
            guard ids.count <= runtime.contextLength else {
                throw EngineRequestError(
                    "This model's maximum context length is \(runtime.contextLength) tokens. However, you requested \(ids.count) tokens in the input for embedding generation. Please reduce the length of the input.",
                    param: "input")
            }
            return ids.map { Int32($0) }
        }
        let vectors = try await runtime.embed(sequences, dimensions: fields.dimensions)
        let promptTokens = sequences.reduce(0) { $0 + $1.count }
        let data: [[String: Any]] = vectors.enumerated().map { index, vector in
            let embedding: Any =
                base64 ? vector.withUnsafeBytes { Data($0).base64EncodedString() } : vector.map(Double.init)
            return ["object": "embedding", "index": index, "embedding": embedding]
        }
        return try jsonResponse([
            "object": "list", "data": data, "model": runtime.servedName,
            "usage": ["prompt_tokens": promptTokens, "total_tokens": promptTokens],
        ])
    }
}
