import Foundation
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModelText
import ModeldAPI
import NIOCore

/// The routes of the earlier services whose clients still call them (docs/older-api.md), answered with the LLM
/// API's machinery:
///
/// | route | what |
/// |---|---|
/// | `POST /generate` | `{prompts, sampling_params, model?}`: a list of completions, in the envelope |
/// | `POST /api/count-tokens` | `{text, model?}`: the count, in the envelope |
/// | `POST /api/generate` without `model` | `{prompt, stream}`: SSE `data: {"delta": ...}` then `data: [DONE]`, or the envelope |
///
/// `/api/generate` is also Ollama's route: a body naming `model` (or Ollama's older `name`) is Ollama's, one without
/// is the earlier service's. A request that names no model goes to the `default_model` setting, else to the one
/// ready run.
extension LLMController {
    /// The routes any key may call, as the LLM API's.
    static let olderInferencePaths: Set<String> = ["/generate", "/api/count-tokens"]
    /// The most prompts one `POST /generate` completes.
    static let maxPrompts = 256

    func addOlderRoutes(to router: Router<Context>) {
        router.post("/generate", use: olderGenerate)
        router.post("/api/count-tokens", use: olderCountTokens)
    }

    @Sendable func olderGenerate(_ request: Request, context: Context) async throws -> Envelope<[OlderCompletion]> {
        let started = ContinuousClock.now
        let raw = try await RawBody.read(request)
        let fields = try APIError.decodeJSON(as: OlderGenerateRequest.self, from: raw.data)
        guard (1...Self.maxPrompts).contains(fields.prompts.count) else {
            throw APIError.badRequest("prompts must hold 1 to \(Self.maxPrompts) prompts", field: "prompts")
        }
        if let empty = fields.prompts.firstIndex(where: \.isEmpty) {
            throw APIError.badRequest("prompts[\(empty)] is empty", field: "prompts")
        }
        var sampling = JinjaObject()
        switch raw.object["sampling_params"] {
        case .object(let given)?: sampling = given
        case nil, .none?: break
        default: throw APIError.badRequest("sampling_params must be an object", field: "sampling_params")
        }
        for field in ["prompt", "stream", "model"] { sampling[field] = nil }
        let model = try unnamedModel(fields.model)
        var completions: [OlderCompletion] = []
        for (index, prompt) in fields.prompts.enumerated() {
            var body = sampling
            body["prompt"] = .string(prompt)
            let lease = try await target(runID: nil, model: model, key: context.apiKey)
            let reply = try await engineCall(
                lease, "/v1/completions", .completion, body: body, stream: false, started: started, route: "/generate", context: context
            ).reply()
            completions.append(OlderCompletion(index: index, text: reply.text, finishReason: reply.finishReason, usage: reply.usage))
        }
        return Envelope(requestID: context.id, data: completions)
    }

    @Sendable func olderCountTokens(_ request: Request, context: Context) async throws -> Envelope<TokenCount> {
        var raw = try await RawBody.read(request)
        let fields = try APIError.decodeJSON(as: OlderCountTokensRequest.self, from: raw.data)
        raw.replace("model", with: .string(try unnamedModel(fields.model)))
        return Envelope(requestID: context.id, data: try await count(raw))
    }

    /// `POST /api/generate` without `model`: its errors are the envelope's, not Ollama's (the route's usual shape).
    func olderPrompt(_ buffer: ByteBuffer, context: Context) async -> Response {
        do {
            return try await olderPromptReply(buffer, context: context)
        } catch let error as any APIErrorConvertible {
            return ErrorShape.envelope.response(error.apiError, requestID: context.id)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "/api/generate"])
            return ErrorShape.envelope.response(APIError(.internalServerError, "internal error (request id \(context.id))"), requestID: context.id)
        }
    }

    private func olderPromptReply(_ buffer: ByteBuffer, context: Context) async throws -> Response {
        let started = ContinuousClock.now
        let raw = try RawBody(buffer)
        let fields = try APIError.decodeJSON(as: OlderPromptRequest.self, from: raw.data)
        guard !fields.prompt.isEmpty else { throw APIError.badRequest("prompt must not be empty", field: "prompt") }
        var body = raw.object
        body["prompt"] = nil
        body["messages"] = [["role": "user", "content": .string(fields.prompt)]]
        let lease = try await target(runID: nil, model: try unnamedModel(nil), key: context.apiKey)
        let run = lease.run
        let call = engineCall(
            lease, "/v1/chat/completions", .chat, body: body, stream: fields.stream == true, started: started, route: "/api/generate",
            context: context)
        guard call.stream else {
            let reply = try await call.reply()
            let data = LLMGeneration(runID: run.runID, model: run.model, text: reply.text, finishReason: reply.finishReason, usage: reply.usage)
            let encoded = try WireJSON.encoder().encode(Envelope(requestID: context.id, data: data))
            return Response(
                status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: encoded)))
        }
        let upstream = try await call.open()
        RequestTag.mark(model: run.model, streamed: true)
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                func send(_ event: [String: String]) async throws {
                    let json = try JSONSerialization.data(withJSONObject: event, options: [.withoutEscapingSlashes, .sortedKeys])
                    try await writer.write(ByteBuffer(string: "data: \(String(decoding: json, as: UTF8.self))\n\n"))
                }
                let outcome = await call.relay(upstream) { delta in try await send(["delta": delta]) }
                if let error = outcome.abandoned { throw error }
                if let problem = outcome.problem { try await send(["error": problem]) }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            })
    }

    /// The model a request of the earlier routes means: the one it names, else `default_model`, else the one
    /// ready run. - Throws: 400 when that leaves none or several.
    func unnamedModel(_ named: String?) throws -> String {
        if let named, !named.isEmpty { return named }
        if let defaultModel { return defaultModel }
        let ready = Set(supervisor.snapshot.filter { $0.state == .ready }.map(\.name)).sorted()
        guard ready.count == 1 else {
            let runs = ready.isEmpty ? "no run is ready" : "\(ready.count) runs are ready (\(ready.joined(separator: ", ")))"
            throw APIError.badRequest("name the model (model), or set the default_model setting: \(runs)", field: "model")
        }
        return ready[0]
    }
}
