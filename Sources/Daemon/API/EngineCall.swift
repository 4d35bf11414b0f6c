import Catalog
import Foundation
import Hummingbird
import Launchers
import ModelStore
import ModelText
import ModeldAPI
import NIOCore

/// One LLM API request on its way to a run's OpenAI endpoint, through ``EngineProxy`` (its lease holds the
/// run until the exchange ends, and it stops when the client goes away), and its answer turned into the
/// envelope's terms. Its tokens and time to first token are counted in the metrics as the gateway's are.
struct EngineCall {
    enum Kind {
        /// `/v1/completions`: text in `choices[0].text`.
        case completion
        /// `/v1/chat/completions`: text in `choices[0].message.content` (`delta.content` when streamed).
        case chat
    }

    /// What a whole reply says.
    struct Reply {
        var text: String
        var finishReason: String?
        var usage: LLMUsage?
    }

    /// The request's hold on its run, released when the exchange with the engine ends.
    let lease: RunLease
    var run: RunInfo { lease.run }
    let path: String
    let kind: Kind
    /// The engine's request: the client's body with `model` set to the served name and the LLM API's own
    /// fields (`run_id`) removed.
    let body: JinjaObject
    let stream: Bool
    let metrics: DaemonMetrics
    /// When the request arrived, for the time to first token.
    let started: ContinuousClock.Instant
    /// The request's usage account.
    let ticket: UsageTicket

    /// The most of a whole (not streamed) reply that is read.
    static let maxReply = 64 << 20

    init(
        lease: RunLease, path: String, kind: Kind, body: JinjaObject, stream: Bool, metrics: DaemonMetrics, started: ContinuousClock.Instant,
        ticket: UsageTicket
    ) {
        var body = body
        body["run_id"] = nil
        body["model"] = .string(lease.run.servedName)
        body["stream"] = .bool(stream)
        if stream { body["stream_options"] = ["include_usage": true] }
        RequestTag.mark(model: lease.run.model, streamed: false)
        self.lease = lease
        self.path = path
        self.kind = kind
        self.body = body
        self.stream = stream
        self.metrics = metrics
        self.started = started
        self.ticket = ticket
    }

    /// Sends the request and reads the whole reply.
    /// - Throws: ``APIError``: the engine's refusal (4xx, with its message) or failure (502).
    func reply() async throws -> Reply {
        let upstream = try await open()
        do {
            let reply = try await whole(upstream)
            ticket.record(status: 200, usage: reply.usage.map(ReplyMeter.Usage.init))
            return reply
        } catch {
            ticket.record(status: (error as? APIError)?.status ?? 502, usage: nil)
            throw error
        }
    }

    private func whole(_ upstream: EngineReply) async throws -> Reply {
        var data = Data()
        let whole: Bool
        do {
            whole = try await withTaskCancellationHandler {
                try await upstream.collect(upTo: Self.maxReply, into: &data)
            } onCancel: {
                upstream.cancel()
            }
        } catch {
            throw APIError(.badGateway, "run \(run.name) broke off its reply: \(error)")
        }
        guard whole else {
            throw APIError(.badGateway, "the reply of run \(run.name) is larger than \(Self.maxReply >> 20) MiB")
        }
        guard let object = try? JSONLimits.jsonObject(with: data) as? [String: Any],
            let choice = (object["choices"] as? [[String: Any]])?.first
        else {
            throw APIError(.badGateway, "run \(run.name) answered something that is not an OpenAI reply: \(Self.excerpt(data))")
        }
        let text: String? =
            switch kind {
            case .completion: choice["text"] as? String
            case .chat: (choice["message"] as? [String: Any])?["content"] as? String
            }
        let usage = Self.usage(object["usage"])
        if let usage { metrics.recordUsage(ReplyMeter.Usage(usage), model: run.model) }
        return Reply(text: text ?? "", finishReason: choice["finish_reason"] as? String, usage: usage)
    }

    /// What a streamed reply came to.
    struct Outcome {
        /// The text streamed so far (all of it when complete).
        var text = ""
        var finishReason: String?
        var usage: LLMUsage?
        /// Why the reply ended before the engine's `[DONE]`; nil when it is complete.
        var problem: String?
        /// What `onDelta` threw (the client went away): the engine's request was stopped.
        var abandoned: (any Error)?
    }

    /// Sends the request with `stream: true` and answers NDJSON ``LLMStreamEvent`` lines as the engine's SSE
    /// chunks arrive. An engine that refuses the request is still an envelope error: nothing was streamed yet.
    func streamed() async throws -> Response {
        let upstream = try await open()
        RequestTag.mark(model: run.model, streamed: true)
        let call = self
        return Response(
            status: .ok,
            headers: [.contentType: "application/x-ndjson", .cacheControl: "no-cache"],
            body: ResponseBody { writer in
                func send(_ event: LLMStreamEvent) async throws {
                    var line = try WireJSON.encoder().encode(event)
                    line.append(UInt8(ascii: "\n"))
                    try await writer.write(ByteBuffer(bytes: line))
                }
                let outcome = await call.relay(upstream) { delta in try await send(LLMStreamEvent(delta: delta)) }
                if let error = outcome.abandoned { throw error }
                if let problem = outcome.problem {
                    try await send(LLMStreamEvent(done: true, error: problem))
                } else {
                    let run = call.run
                    try await send(
                        LLMStreamEvent(done: true, runID: run.runID, model: run.model, finishReason: outcome.finishReason, usage: outcome.usage))
                }
                try await writer.finish(nil)
            })
    }

    /// Reads a streamed reply (from ``open()``), handing each piece of text to `onDelta`, until the engine's
    /// `[DONE]`, until the engine breaks off or sends something that is not an OpenAI stream, or until `onDelta`
    /// throws (the client went away); the engine's request is stopped whenever it ends early. Its tokens and time
    /// to first token are recorded, and its usage row (status 499 when the client went away).
    /// - Parameter clientGone: whether the client went away (``ClientDeparture``) when a reply that was cut off
    ///   ends: it is then abandoned, as when `onDelta` throws.
    func relay(_ upstream: EngineReply, clientGone: () -> Bool = { false }, onDelta: (String) async throws -> Void) async -> Outcome {
        var outcome = Outcome()
        var events = ServerSentEvents()
        var done = false
        var tally = StreamTokenTally(model: run.model, started: started, metrics: metrics, ticket: ticket)
        do {
            reading: for try await chunk in upstream.body {
                for payload in events.feed(chunk) {
                    if payload == "[DONE]" {
                        done = true
                        break reading
                    }
                    let parsed = Self.streamChunk(payload, kind: kind)
                    if let error = parsed.error {
                        outcome.problem = "run \(run.name): \(error)"
                        break reading
                    }
                    if let reason = parsed.finishReason { outcome.finishReason = reason }
                    if let counted = parsed.usage {
                        outcome.usage = counted
                        tally.usage = ReplyMeter.Usage(counted)
                    }
                    if let delta = parsed.delta, !delta.isEmpty {
                        tally.content()
                        outcome.text += delta
                        do {
                            try await onDelta(delta)
                        } catch {
                            outcome.abandoned = error
                            break reading
                        }
                    }
                }
                if events.buffered > ServerSentEvents.maxLineBytes {
                    outcome.problem =
                        "run \(run.name) sent a line longer than \(ServerSentEvents.maxLineBytes >> 20) MiB: its reply is not an event stream"
                    break reading
                }
            }
        } catch {
            outcome.problem = "run \(run.name) broke off its reply: \(error)"
        }
        upstream.cancel()
        if !done, outcome.abandoned == nil, clientGone() { outcome.abandoned = ClientDeparture.Gone() }
        tally.record(status: outcome.abandoned == nil ? 200 : 499)
        if !done, outcome.problem == nil { outcome.problem = "run \(run.name) ended its reply without [DONE]" }
        return outcome
    }

    // MARK: Helpers

    /// Opens the request through ``EngineProxy``; a refusal or failure becomes an ``APIError``, recorded in the
    /// request's usage row. The lease is released when the exchange ends, or here when the request cannot be sent.
    func open() async throws -> EngineReply {
        do {
            return try await send()
        } catch {
            ticket.record(status: (error as? APIError)?.status ?? 502, usage: nil)
            throw error
        }
    }

    private func send() async throws -> EngineReply {
        let request: EngineRequest
        do {
            request = try engineRequest()
        } catch {
            lease.release()
            throw error
        }
        let upstream: EngineReply
        do {
            upstream = try await EngineProxy.open(request, lease: lease)
        } catch {
            throw APIError(.badGateway, "the \(run.engine.displayName) of run \(run.name) did not answer: \(error)")
        }
        guard (200..<300).contains(upstream.status) else {
            var data = Data()
            // What arrived before the engine broke off, or its first MiB, is enough to report.
            _ = try? await upstream.collect(upTo: 1 << 20, into: &data)
            throw engineError(status: upstream.status, body: data)
        }
        return upstream
    }

    private func engineRequest() throws -> EngineRequest {
        guard let endpoint = run.endpoint else {
            throw APIError(.conflict, "run \(run.name) has no endpoint: it is \(run.state.rawValue)")
        }
        let payload: ByteBuffer
        do {
            payload = ByteBuffer(string: try JinjaValue.object(body).pythonJSON())
        } catch let error as TemplateError {
            // The body the daemon built nests past the limit (a schema at the limit, wrapped in response_format).
            throw APIError.badRequest("the request cannot be sent to the engine: \(error.message)")
        }
        do {
            return try EngineRequest(
                endpoint: endpoint, path: path,
                headers: [("Content-Type", "application/json"), ("Accept", stream ? "text/event-stream" : "application/json")],
                body: payload)
        } catch {
            throw APIError(.badGateway, "the \(run.engine.displayName) of run \(run.name) did not answer: \(error)")
        }
    }

    /// An engine's error reply as the envelope reports it: its 4xx kept (the request was at fault), anything
    /// else a 502; the engine's own message quoted.
    private func engineError(status: Int, body: Data) -> APIError {
        let object = try? JSONLimits.jsonObject(with: body) as? [String: Any]
        let message =
            ((object?["error"] as? [String: Any])?["message"] as? String)
            ?? (object?["error"] as? String)
            ?? (object?["message"] as? String)
            ?? Self.excerpt(body)
        if (400..<500).contains(status) {
            return APIError(HTTPResponse.Status(code: status), "the \(run.engine.displayName) of run \(run.name) refused the request: \(message)")
        }
        return APIError(.badGateway, "the \(run.engine.displayName) of run \(run.name) failed (HTTP \(status)): \(message)")
    }

    /// One SSE chunk of a streamed reply.
    private static func streamChunk(_ payload: String, kind: Kind) -> (delta: String?, finishReason: String?, usage: LLMUsage?, error: String?) {
        guard let object = try? JSONLimits.jsonObject(with: Data(payload.utf8)) as? [String: Any] else {
            return (nil, nil, nil, "a streamed chunk is not JSON: \(payload.prefix(200))")
        }
        if let error = object["error"] {
            let message = ((error as? [String: Any])?["message"] as? String) ?? (error as? String) ?? "\(error)"
            return (nil, nil, nil, message)
        }
        let choice = (object["choices"] as? [[String: Any]])?.first
        let delta: String? =
            switch kind {
            case .completion: choice?["text"] as? String
            case .chat: (choice?["delta"] as? [String: Any])?["content"] as? String
            }
        return (delta, choice?["finish_reason"] as? String, usage(object["usage"]), nil)
    }

    private static func usage(_ value: Any?) -> LLMUsage? {
        guard let usage = value as? [String: Any],
            let prompt = usage["prompt_tokens"] as? Int, let completion = usage["completion_tokens"] as? Int
        else { return nil }
        return LLMUsage(promptTokens: prompt, completionTokens: completion, totalTokens: usage["total_tokens"] as? Int)
    }

    private static func excerpt(_ data: Data) -> String {
        let text = String(decoding: data.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "(an empty body)" : text
    }
}

extension EngineReply {
    /// Reads the body into `data` until it ends, or until `data` holds more than `limit` bytes: then the
    /// transfer is stopped.
    /// - Returns: false when the body is longer than `limit` (`data` holds its first chunks, a little past `limit`).
    /// - Throws: the transfer's error when the engine broke off; `data` keeps what arrived before.
    func collect(upTo limit: Int, into data: inout Data) async throws -> Bool {
        for try await chunk in body {
            data.append(contentsOf: chunk.readableBytesView)
            if data.count > limit {
                cancel()
                return false
            }
        }
        return true
    }
}
