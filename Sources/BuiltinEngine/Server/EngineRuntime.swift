import EngineCompute
import Foundation
import ModelText
import Synchronization

/// A loaded model ready to serve: weights, tokenizer, chat template, and the batching loop.
package final class EngineRuntime: Sendable {
    package let generator: Generator
    package let tokenizer: Tokenizer
    /// Nil when the model has no chat template (then only `/v1/completions` works).
    package let template: ChatTemplate?
    package let templateError: String?
    /// How embeddings pool hidden states; nil when the model is not an embedding model (then `/v1/embeddings`
    /// is refused, and generation is refused when it is one).
    package let pooling: PoolingConfig?
    package let servedName: String
    package let scheduler: BatchScheduler
    package let created: Int
    /// The vocabulary's trie for structured output, built by the first request that needs it.
    private let trie = Mutex<TokenTrie?>(nil)

    /// Loads a Hugging Face model directory, or a GGUF file (a path ending in `.gguf`) that holds the model,
    /// its tokenizer and its chat template. `quantization` (one of ``GGMLType/onLoad``) quantizes a directory's
    /// weights on load; a GGUF file is used as it is quantized.
    /// - Throws: a clear error for an unsupported architecture, a broken safetensors or GGUF file or tokenizer,
    ///   or a quantization asked of a GGUF file.
    package init(directory: URL, servedName: String, maxBatch: Int = 16, quantization: GGMLType? = nil) throws {
        let model: TransformerModel
        let template: Result<ChatTemplate, any Error>
        if directory.isGGUF {
            if let quantization {
                throw ModelError(
                    .unsupportedArchitecture,
                    "\(directory.lastPathComponent) is a GGUF file, used as it is quantized: quantizing to \(quantization) on load is for safetensors models"
                )
            }
            let file = try GGUFFile(url: directory)
            model = try TransformerModel(gguf: file)
            tokenizer = try Tokenizer(gguf: file)
            template = Result { try ChatTemplate(gguf: file) }
            pooling = nil
        } else {
            model = try TransformerModel(directory: directory, quantization: quantization)
            tokenizer = try Tokenizer(directory: directory)
            template = Result { try ChatTemplate(directory: directory) }
            pooling = try PoolingConfig(directory: directory)
        }
        generator = Generator(model: model)
        switch template {
        case .success(let loaded):
            self.template = loaded
            templateError = nil
        case .failure(let error):
            self.template = nil
            templateError = "\(error)"
        }
        self.servedName = servedName
        scheduler = BatchScheduler(generator: generator, maxBatch: maxBatch)
        created = Int(Date().timeIntervalSince1970)
        scheduler.start()
    }

    package var contextLength: Int { generator.model.config.maxPositionEmbeddings }

    /// The vocabulary as a trie of token bytes (structured output's masks walk it).
    package var vocabulary: TokenTrie {
        trie.withLock { trie in
            if let trie { return trie }
            let built = TokenTrie(tokenizer: tokenizer)
            trie = built
            return built
        }
    }

    /// The request's sampling settings over the model's defaults from `generation_config.json`.
    func parameters(for request: SamplingFields, promptTokens: Int) throws -> SamplingParameters {
        let room = contextLength - promptTokens
        guard room > 0 else {
            throw EngineRequestError(
                "This model's maximum context length is \(contextLength) tokens. However, your prompt has \(promptTokens) tokens. Please shorten the prompt.",
                param: "messages")
        }
        let requested = request.maxCompletionTokens ?? request.maxTokens
        if let requested {
            guard requested >= 1 else { throw EngineRequestError("max_tokens must be at least 1", param: "max_tokens") }
            guard requested <= room else {
                let (total, overflow) = promptTokens.addingReportingOverflow(requested)
                throw EngineRequestError(
                    "This model's maximum context length is \(contextLength) tokens. However, you requested \(overflow ? Int.max : total) tokens (\(promptTokens) in the messages, \(requested) in the completion). Please reduce the length of the messages or completion.",
                    param: "max_tokens")
            }
        }
        var parameters = SamplingParameters(defaults: generator.model.generationConfig, maxTokens: requested ?? room)
        if let value = request.temperature {
            guard value >= 0 else { throw EngineRequestError("temperature must be at least 0", param: "temperature") }
            parameters.temperature = Float(value)
        }
        if let value = request.topP {
            guard value > 0, value <= 1 else { throw EngineRequestError("top_p must be in (0, 1]", param: "top_p") }
            parameters.topP = Float(value)
        }
        if let value = request.topK { parameters.topK = max(0, value) }
        if let value = request.minP { parameters.minP = Float(value) }
        if let value = request.repetitionPenalty {
            guard value > 0 else { throw EngineRequestError("repetition_penalty must be positive", param: "repetition_penalty") }
            parameters.repetitionPenalty = Float(value)
        }
        if let value = request.presencePenalty { parameters.presencePenalty = Float(value) }
        if let value = request.frequencyPenalty { parameters.frequencyPenalty = Float(value) }
        if let value = request.seed { parameters.seed = UInt64(bitPattern: Int64(value)) }
        if let value = request.minTokens { parameters.minTokens = max(0, value) }
        if let value = request.ignoreEOS { parameters.ignoreEOS = value }
        if let value = request.stopTokenIds {
            // An id that does not fit 32 bits is no token: it can never stop generation.
            parameters.stopTokenIds = value.compactMap { Int32(exactly: $0) }
        }
        if let value = request.topLogprobs {
            guard (0...20).contains(value) else { throw EngineRequestError("top_logprobs must be between 0 and 20", param: "top_logprobs") }
            parameters.topLogprobs = value
        }
        parameters.logprobs = request.logprobs?.enabled ?? false || parameters.topLogprobs > 0
        return parameters
    }
}

/// A request the engine refuses: an OpenAI-style 400.
package struct EngineRequestError: Error, CustomStringConvertible {
    package var message: String
    package var param: String?
    package init(_ message: String, param: String? = nil) {
        self.message = message
        self.param = param
    }
    package var description: String { message }
}
