import Foundation
import Hummingbird
import Logging
import ModelText
import NIOCore

/// The built-in engine's OpenAI-compatible HTTP API:
///
/// | route | what |
/// |---|---|
/// | `GET /health` | 200 once the model is loaded |
/// | `GET /v1/models` | the served model |
/// | `POST /v1/chat/completions` | chat, streaming (SSE `chat.completion.chunk`, then `data: [DONE]`) or not |
/// | `POST /v1/completions` | raw completion, streaming or not |
/// | `POST /v1/embeddings` | embeddings, for embedding models (sentence-transformers pooling files) |
///
/// Both take `response_format` (`json_object`, `json_schema`: sampling constrained to the schema); chat parses
/// tool calls out of replies when the request has `tools` (docs/builtin-engine.md, Structured output and Tool calls).
package struct EngineServer: Sendable {
    package let runtime: EngineRuntime

    package init(runtime: EngineRuntime) {
        self.runtime = runtime
    }

    /// The router with every route; errors come back as OpenAI error bodies.
    package func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: OpenAIErrorMiddleware())
        router.get("/health") { _, _ in Response(status: .ok) }
        router.get("/v1/models") { _, _ in try jsonResponse(modelList()) }
        router.post("/v1/chat/completions") { request, context in try await chat(request, context: context) }
        router.post("/v1/completions") { request, context in try await complete(request, context: context) }
        router.post("/v1/embeddings") { request, _ in try await embeddings(request) }
        return router
    }

    private func modelList() -> [String: Any] {
        [
            "object": "list",
            "data": [
                [
                    "id": runtime.servedName, "object": "model", "created": runtime.created, "owned_by": "modeld",
                    "root": runtime.servedName, "max_model_len": runtime.contextLength,
                ] as [String: Any]
            ],
        ]
    }

    // MARK: Chat

    private func chat(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let bytes = try await Self.body(of: request)
        let fields = try decodeFields(SamplingFields.self, bytes)
        try checkCommon(fields)
        guard let template = runtime.template else {
            throw EngineRequestError("this model has no chat template (\(runtime.templateError ?? "")); use /v1/completions")
        }
        guard case .object(let object) = try JinjaValue(json: bytes) else { throw EngineRequestError("the body must be a JSON object") }
        guard case .array(let rawMessages)? = object["messages"], !rawMessages.isEmpty else {
            throw EngineRequestError("messages must be a non-empty array", param: "messages")
        }
        let messages = try rawMessages.map(Self.normalizeMessage)
        var tools: [JinjaValue]?
        if case .array(let list)? = object["tools"], !list.isEmpty { tools = list }
        var extra: [String: JinjaValue] = [:]
        if case .object(let kwargs)? = object["chat_template_kwargs"] {
            for (key, value) in kwargs.pairs { extra[key] = value }
        }
        let prompt: String
        do {
            prompt = try template.render(messages: messages, tools: tools, addGenerationPrompt: true, extra: extra)
        } catch {
            throw EngineRequestError("the chat template rejected the conversation: \(error)", param: "messages")
        }
        let ids = try runtime.tokenizer.encode(prompt).map { Int32($0) }
        var grammar = try Self.grammar(responseFormat: object["response_format"])
        var toolFormat: ToolCallFormat?
        if let tools {
            let format = ToolCallFormat(template: template.source)
            switch object["tool_choice"] {
            case nil, .none?, .string("auto")?:
                toolFormat = format
            case .string("none")?:
                break
            case .string("required")?:
                toolFormat = format
                grammar = try Self.toolGrammar(format, tools: tools, only: nil, besides: grammar)
            case .object(let choice)?:
                guard case .object(let function)? = choice["function"], case .string(let name)? = function["name"] else {
                    throw EngineRequestError(
                        "tool_choice must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}", param: "tool_choice")
                }
                toolFormat = format
                grammar = try Self.toolGrammar(format, tools: tools, only: name, besides: grammar)
            default:
                throw EngineRequestError("tool_choice must be none, auto, required or a named function", param: "tool_choice")
            }
        }
        return try await respond(fields: fields, promptIDs: ids, kind: .chat, grammar: grammar, toolFormat: toolFormat, request: request)
    }

    /// The grammar `response_format` asks for: nil for text, or when there is none.
    static func grammar(responseFormat: JinjaValue?) throws -> JSONGrammar? {
        guard let responseFormat, responseFormat != .none else { return nil }
        guard case .object(let format) = responseFormat, case .string(let type)? = format["type"] else {
            throw EngineRequestError("response_format must be an object with a type", param: "response_format")
        }
        switch type {
        case "text":
            return nil
        case "json_object":
            return JSONGrammar()
        case "json_schema":
            guard case .object(let wrapper)? = format["json_schema"] else {
                throw EngineRequestError("response_format.json_schema must be an object holding the schema", param: "response_format")
            }
            do {
                return try JSONGrammar(schema: wrapper["schema"] ?? .bool(true))
            } catch let error as SchemaError {
                throw EngineRequestError("response_format.json_schema.schema: \(error.message)", param: "response_format")
            }
        default:
            throw EngineRequestError("response_format type \"\(type)\" is not supported (text, json_object, json_schema)", param: "response_format")
        }
    }

    /// The grammar of one forced tool call (`tool_choice` `required` or a named function).
    private static func toolGrammar(
        _ format: ToolCallFormat, tools: [JinjaValue], only name: String?, besides grammar: JSONGrammar?
    ) throws -> JSONGrammar {
        guard grammar == nil else { throw EngineRequestError("tool_choice that forces a call cannot go with response_format", param: "tool_choice") }
        do {
            return try format.grammar(tools: tools, only: name)
        } catch let error as SchemaError {
            throw EngineRequestError("tools: \(error.message)", param: "tools")
        }
    }

    /// Message content may be a list of parts (`[{"type": "text", "text": ...}]`): templates expect text.
    private static func normalizeMessage(_ message: JinjaValue) throws -> JinjaValue {
        guard case .object(var object) = message else { throw EngineRequestError("each message must be an object", param: "messages") }
        guard case .string? = object["role"] else { throw EngineRequestError("each message needs a role", param: "messages") }
        if case .array(let parts)? = object["content"] {
            var text = ""
            for part in parts {
                guard case .object(let partObject) = part, case .string(let type)? = partObject["type"] else { continue }
                guard type == "text" else {
                    throw EngineRequestError("content parts of type \"\(type)\" are not supported; send text", param: "messages")
                }
                if case .string(let value)? = partObject["text"] { text += value }
            }
            object = JinjaObject(pairs: object.pairs.map { $0.key == "content" ? ($0.key, JinjaValue.string(text)) : ($0.key, $0.value) })
        }
        return .object(object)
    }

    // MARK: Completions

    private func complete(_ request: Request, context: BasicRequestContext) async throws -> Response {
        let bytes = try await Self.body(of: request)
        let fields = try decodeFields(SamplingFields.self, bytes)
        try checkCommon(fields)
        let prompt = try decodeFields(CompletionFields.self, bytes).prompt
        let ids: [Int32]
        if let tokens = prompt.tokens {
            ids = tokens.map { Int32(truncatingIfNeeded: $0) }
        } else {
            ids = try runtime.tokenizer.encode(prompt.text ?? "").map { Int32($0) }
        }
        guard !ids.isEmpty else { throw EngineRequestError("prompt must not be empty", param: "prompt") }
        guard case .object(let object) = try JinjaValue(json: bytes) else { throw EngineRequestError("the body must be a JSON object") }
        let grammar = try Self.grammar(responseFormat: object["response_format"])
        return try await respond(fields: fields, promptIDs: ids, kind: .completion, grammar: grammar, toolFormat: nil, request: request)
    }

    // MARK: Generation and responses

    enum Kind { case chat, completion }

    private func checkCommon(_ fields: SamplingFields) throws {
        if runtime.pooling != nil {
            throw EngineRequestError("\(runtime.servedName) is an embedding model: it serves /v1/embeddings, not text generation", param: "model")
        }
        if let n = fields.n, n != 1 { throw EngineRequestError("only n=1 is supported", param: "n") }
        if let model = fields.model, model != runtime.servedName {
            throw EngineRequestError("The model `\(model)` does not exist. This server serves `\(runtime.servedName)`.", param: "model")
        }
    }

    private func respond(
        fields: SamplingFields, promptIDs: [Int32], kind: Kind, grammar: JSONGrammar?, toolFormat: ToolCallFormat?, request: Request
    ) async throws -> Response {
        var parameters = try runtime.parameters(for: fields, promptTokens: promptIDs.count)
        if kind == .completion, let count = fields.logprobs?.count {
            parameters.logprobs = true
            parameters.topLogprobs = min(20, count)
        }
        let generation: Generation
        do {
            generation = try runtime.generator.makeGeneration(prompt: promptIDs, parameters: parameters)
        } catch let error as ModelError {
            throw EngineRequestError(error.description)
        }
        if let grammar {
            // Each byte of the shortest output can be one token (byte-level vocabularies have all 256 bytes).
            guard grammar.shortestOutput <= parameters.maxTokens else {
                throw EngineRequestError(
                    "max_tokens \(parameters.maxTokens) is too small for the JSON schema: its shortest output takes \(grammar.shortestOutput) tokens",
                    param: "max_tokens")
            }
            generation.constraint = JSONConstraint(grammar: grammar, vocabulary: runtime.vocabulary)
        }
        let job = runtime.scheduler.submit(generation)
        let id = (kind == .chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let created = Int(Date().timeIntervalSince1970)
        let stops = fields.stopStrings
        if fields.stream == true {
            return streamingResponse(
                job: job, id: id, created: created, kind: kind, stops: stops, promptTokens: promptIDs.count,
                includeUsage: fields.streamOptions?.includeUsage == true, logprobs: parameters.logprobs, toolFormat: toolFormat)
        }
        var assembler = TextAssembler(tokenizer: runtime.tokenizer, stops: stops)
        var text = ""
        var finish = "length"
        var completionTokens = 0
        var logprobs: [ChatLogprob] = []
        try await withTaskCancellationHandler {
            for try await token in job.tokens {
                completionTokens += 1
                if parameters.logprobs { logprobs.append(try logprob(token)) }
                text += try assembler.feed(token.id)
                if assembler.stopped {
                    job.cancel()
                    finish = "stop"
                    break
                }
                if let reason = token.finishReason { finish = reason == .stop ? "stop" : "length" }
            }
        } onCancel: {
            job.cancel()
        }
        text += assembler.finish()
        let usage = Usage(promptTokens: promptIDs.count, completionTokens: completionTokens)
        var choice: [String: Any] = ["index": 0, "finish_reason": finish]
        let logprobsValue: Any = parameters.logprobs ? logprobsJSON(logprobs, kind: kind) : NSNull()
        choice["logprobs"] = logprobsValue
        switch kind {
        case .chat:
            var message: [String: Any] = ["role": "assistant", "content": text]
            if let toolFormat {
                var parser = ToolCallParser(format: toolFormat)
                var content = ""
                var calls: [ToolCall] = []
                for event in parser.feed(text) + parser.finish() {
                    switch event {
                    case .content(let piece): content += piece
                    case .call(let call): calls.append(call)
                    }
                }
                if !calls.isEmpty {
                    message["content"] = content.isEmpty ? NSNull() : content
                    message["tool_calls"] = calls.map { $0.json(index: nil) }
                    choice["finish_reason"] = "tool_calls"
                }
            }
            choice["message"] = message
        case .completion: choice["text"] = text
        }
        return try jsonResponse([
            "id": id, "object": kind == .chat ? "chat.completion" : "text_completion", "created": created,
            "model": runtime.servedName, "choices": [choice], "usage": usageJSON(usage),
        ])
    }

    private func streamingResponse(
        job: SchedulerJob, id: String, created: Int, kind: Kind, stops: [String], promptTokens: Int, includeUsage: Bool,
        logprobs: Bool, toolFormat: ToolCallFormat?
    ) -> Response {
        let runtime = self.runtime
        let server = self
        return Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                var assembler = TextAssembler(tokenizer: runtime.tokenizer, stops: stops)
                var parser = toolFormat.map(ToolCallParser.init(format:))
                var completionTokens = 0
                var finish = "length"
                func send(_ object: [String: Any]) async throws {
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
                    var buffer = ByteBuffer(string: "data: ")
                    buffer.writeBytes(data)
                    buffer.writeString("\n\n")
                    try await writer.write(buffer)
                }
                func chunk(_ text: String?, finish: String?, logprobs: [ChatLogprob]? = nil) -> [String: Any] {
                    var choice: [String: Any] = ["index": 0, "finish_reason": finish as Any? ?? NSNull()]
                    choice["logprobs"] = logprobs.map { server.logprobsJSON($0, kind: kind) } ?? NSNull()
                    switch kind {
                    case .chat: choice["delta"] = text.map { ["content": $0] } ?? [:]
                    case .completion: choice["text"] = text ?? ""
                    }
                    return [
                        "id": id, "object": kind == .chat ? "chat.completion.chunk" : "text_completion", "created": created,
                        "model": runtime.servedName, "choices": [choice],
                    ]
                }
                do {
                    if kind == .chat {
                        var first = chunk(nil, finish: nil)
                        first["choices"] = [
                            ["index": 0, "delta": ["role": "assistant", "content": ""], "logprobs": NSNull(), "finish_reason": NSNull()]
                        ]
                        try await send(first)
                    }
                    /// Text as it goes out: through the tool-call parser when tools are on, its calls sent as their own deltas.
                    func content(_ text: String, final: Bool) async throws -> String {
                        guard var current = parser else { return text }
                        defer { parser = current }
                        var passed = ""
                        var sent = current.calls
                        for event in current.feed(text) + (final ? current.finish() : []) {
                            switch event {
                            case .content(let piece): passed += piece
                            case .call(let call):
                                if !passed.isEmpty { try await send(chunk(passed, finish: nil)) }
                                passed = ""
                                var delta = chunk(nil, finish: nil)
                                let entry = call.json(index: sent)
                                sent += 1
                                delta["choices"] = [["index": 0, "delta": ["tool_calls": [entry]], "logprobs": NSNull(), "finish_reason": NSNull()]]
                                try await send(delta)
                            }
                        }
                        return passed
                    }
                    for try await token in job.tokens {
                        completionTokens += 1
                        let text = try await content(try assembler.feed(token.id), final: false)
                        if let reason = token.finishReason { finish = reason == .stop ? "stop" : "length" }
                        if assembler.stopped {
                            job.cancel()
                            finish = "stop"
                        }
                        if !text.isEmpty || logprobs {
                            try await send(chunk(text, finish: nil, logprobs: logprobs ? [try server.logprob(token)] : nil))
                        }
                        if assembler.stopped { break }
                    }
                    let rest = try await content(assembler.finish(), final: true)
                    if !rest.isEmpty { try await send(chunk(rest, finish: nil)) }
                    if let parser, parser.calls > 0 { finish = "tool_calls" }
                    try await send(chunk(nil, finish: finish))
                    if includeUsage {
                        var last = chunk(nil, finish: nil)
                        last["choices"] = [Any]()
                        last["usage"] = server.usageJSON(Usage(promptTokens: promptTokens, completionTokens: completionTokens))
                        try await send(last)
                    }
                    try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                } catch {
                    // The client went away (or the engine failed): stop generating for it.
                    job.cancel()
                    throw error
                }
            })
    }

    private func logprob(_ token: GeneratedToken) throws -> ChatLogprob {
        func entry(_ id: Int32) throws -> (String, [UInt8]) {
            let bytes = try runtime.tokenizer.decodeBytes([Int(id)])
            return (String(decoding: bytes, as: UTF8.self), bytes)
        }
        let (text, bytes) = try entry(token.id)
        let top = try token.topLogprobs.map { item -> ChatLogprob.Top in
            let (topText, topBytes) = try entry(item.id)
            return ChatLogprob.Top(token: topText, logprob: item.logprob, bytes: topBytes)
        }
        return ChatLogprob(token: text, logprob: token.logprob ?? 0, bytes: bytes, topLogprobs: top)
    }

    fileprivate func logprobsJSON(_ items: [ChatLogprob], kind: Kind) -> Any {
        switch kind {
        case .chat:
            return [
                "content": items.map { item in
                    [
                        "token": item.token, "logprob": Double(item.logprob), "bytes": item.bytes.map(Int.init),
                        "top_logprobs": item.topLogprobs.map { ["token": $0.token, "logprob": Double($0.logprob), "bytes": $0.bytes.map(Int.init)] },
                    ] as [String: Any]
                }
            ]
        case .completion:
            return [
                "tokens": items.map(\.token), "token_logprobs": items.map { Double($0.logprob) },
                "top_logprobs": items.map { item in Dictionary(item.topLogprobs.map { ($0.token, Double($0.logprob)) }, uniquingKeysWith: max) },
            ] as [String: Any]
        }
    }

    fileprivate func usageJSON(_ usage: Usage) -> [String: Any] {
        ["prompt_tokens": usage.promptTokens, "completion_tokens": usage.completionTokens, "total_tokens": usage.totalTokens]
    }

    /// The largest request body the server reads: 32 MiB, as the daemon's gateway.
    static let maxBody = 32 << 20

    /// A request's body, at most ``maxBody`` bytes and nested at most ``JSONLimits/maxDepth`` levels (checked
    /// before any JSON parser sees it).
    /// - Throws: a 413 past the size, a 400 past the nesting, each naming its limit.
    static func body(of request: Request) async throws -> [UInt8] {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBody)
        } catch {
            throw HTTPError(.contentTooLarge, message: "the request body is larger than the limit of \(maxBody >> 20) MiB")
        }
        let bytes = Array(body.readableBytesView)
        do {
            try JSONLimits.check(bytes)
        } catch {
            throw EngineRequestError("the body is not valid JSON: \(error.message)")
        }
        return bytes
    }

    func decodeFields<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        // JSON is UTF-8 (RFC 8259); the decoders would let an ill-formed sequence through as U+FFFD.
        guard String(validating: bytes, as: UTF8.self) != nil else { throw EngineRequestError("the body is not valid UTF-8") }
        do {
            return try JSONLimits.decode(T.self, from: Data(bytes))
        } catch let DecodingError.typeMismatch(_, context) {
            throw EngineRequestError(
                "field \(context.codingPath.map(\.stringValue).joined(separator: ".")) has the wrong type",
                param: context.codingPath.first?.stringValue)
        } catch let DecodingError.keyNotFound(key, _) {
            throw EngineRequestError("missing field \(key.stringValue)", param: key.stringValue)
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            // A field's own decoder said what it takes (`input`, `prompt`).
            throw EngineRequestError(context.debugDescription, param: context.codingPath.first?.stringValue)
        } catch {
            throw EngineRequestError("the body is not valid JSON")
        }
    }
}

/// JSON from a Foundation object, as a 200 response.
func jsonResponse(_ object: [String: Any], status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

/// Errors as OpenAI's `{"error": {"message", "type", "param", "code"}}`.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as EngineRequestError {
            return Self.error(.badRequest, error.message, type: "BadRequestError", param: error.param)
        } catch let error as HTTPError {
            return Self.error(
                error.status, error.body ?? "\(error.status.reasonPhrase): \(request.uri.path)",
                type: error.status == .notFound ? "NotFoundError" : "BadRequestError")
        } catch {
            context.logger.error("engine request failed", metadata: ["error": "\(error)"])
            return Self.error(.internalServerError, "\(error)", type: "InternalServerError")
        }
    }

    static func error(_ status: HTTPResponse.Status, _ message: String, type: String, param: String? = nil) -> Response {
        let body: [String: Any] = ["error": ["message": message, "type": type, "param": param as Any? ?? NSNull(), "code": status.code]]
        return (try? jsonResponse(body, status: status)) ?? Response(status: status)
    }
}
