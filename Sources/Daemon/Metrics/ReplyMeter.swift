import Foundation
import Hummingbird
import ModelText
import ModeldAPI
import NIOCore

extension DaemonMetrics {
    /// Wraps a forwarded streamed gateway reply (SSE) so that its tokens and its time to first token are counted
    /// as its bytes pass. Each chunk is examined after it has been handed to the client, so nothing is held
    /// back or delayed. A reply that is not streamed is counted by ``recordUsage(ofReply:model:)``.
    /// - Parameters:
    ///   - model: the `model` label (the model the run serves, as it was started).
    ///   - started: when the gateway received the request.
    ///   - ticket: the request's usage account, recorded when the reply ends.
    func meterReply(_ response: Response, model: String, started: ContinuousClock.Instant, ticket: UsageTicket) -> Response {
        guard (200..<300).contains(response.status.code),
            response.headers[.contentType]?.lowercased().hasPrefix("text/event-stream") == true
        else {
            ticket.record(status: Int(response.status.code), usage: nil)
            return response
        }
        var response = response
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            let meter = ReplyMeter(model: model, started: started, metrics: self, ticket: ticket)
            // Also when the client goes away mid-stream: what it was sent is counted.
            defer { meter.finish(status: 499) }
            try await body.write(MeteredBodyWriter(base: writer, meter: meter))
        }
        return response
    }
}

/// The tokens of one streamed reply, counted as its chunks pass (the gateway's forwarded SSE and the LLM API's
/// streams): the last `usage` the engine sends (a final chunk when the client asked for
/// `stream_options.include_usage`) gives both counts; without one, each chunk with content counts as one
/// completion token. The first chunk with content gives the time to first token. The count goes to the metrics
/// and to the request's usage account.
struct StreamTokenTally {
    let model: String
    let started: ContinuousClock.Instant
    let metrics: DaemonMetrics
    let ticket: UsageTicket
    /// The engine's own count, once the stream has carried it.
    var usage: ReplyMeter.Usage?
    private var contentChunks = 0

    init(model: String, started: ContinuousClock.Instant, metrics: DaemonMetrics, ticket: UsageTicket) {
        self.model = model
        self.started = started
        self.metrics = metrics
        self.ticket = ticket
    }

    /// A chunk with content passed.
    mutating func content() {
        contentChunks += 1
        if contentChunks == 1 { metrics.recordTimeToFirstToken(model: model, ContinuousClock.now - started) }
    }

    /// Records the count; called once, when the stream is done or broken off.
    /// - Parameter status: the request's status in its usage row (200 for a stream that began, 499 when the client
    ///   went away).
    func record(status: Int = 200) {
        if let usage {
            metrics.recordUsage(usage, model: model)
        } else {
            metrics.recordTokens(model: model, kind: .completion, count: contentChunks)
        }
        ticket.record(status: status, usage: usage, contentChunks: contentChunks)
    }
}

/// Reads one streamed gateway reply (SSE) event by event as it is forwarded, and counts its tokens with a
/// ``StreamTokenTally``.
final class ReplyMeter {
    private let decoder = JSONDecoder()
    /// The reply split into events; a line longer than ``ServerSentEvents/maxLineBytes`` stops its reading.
    private var events = ServerSentEvents()
    private var givenUp = false
    private var tally: StreamTokenTally
    private var finished = false

    init(model: String, started: ContinuousClock.Instant, metrics: DaemonMetrics, ticket: UsageTicket) {
        tally = StreamTokenTally(model: model, started: started, metrics: metrics, ticket: ticket)
    }

    func observe(_ chunk: ByteBuffer) {
        guard !givenUp else { return }
        for payload in events.feed(chunk) { event(payload) }
        if events.buffered > ServerSentEvents.maxLineBytes {
            givenUp = true
            events = ServerSentEvents()
        }
    }

    /// Records what the reply said, when the body is done or broken off; later calls do nothing.
    func finish(status: Int) {
        guard !finished else { return }
        finished = true
        tally.record(status: status)
    }

    /// One SSE event's payload: `{json}` chunks are read; `[DONE]` is not.
    private func event(_ payload: String) {
        guard payload.first == "{", let chunk = try? JSONLimits.decode(ReplyChunk.self, from: Data(payload.utf8), decoder: decoder) else { return }
        if let usage = chunk.usage { tally.usage = usage }
        if chunk.choices?.contains(where: \.hasContent) == true { tally.content() }
    }

    /// The parts of an OpenAI stream chunk that are counted.
    private struct ReplyChunk: Decodable {
        struct Choice: Decodable {
            struct Delta: Decodable {
                var content: String?
            }
            var delta: Delta?
            var text: String?

            var hasContent: Bool { !(delta?.content ?? "").isEmpty || !(text ?? "").isEmpty }
        }
        var choices: [Choice]?
        var usage: Usage?
    }

    /// The engine's own count of a reply's tokens (OpenAI's `usage`).
    struct Usage: Decodable, Sendable {
        var promptTokens: Int?
        var completionTokens: Int?

        init(promptTokens: Int?, completionTokens: Int?) {
            self.promptTokens = promptTokens
            self.completionTokens = completionTokens
        }

        /// The count of an LLM API reply.
        init(_ usage: LLMUsage) {
            self.init(promptTokens: usage.promptTokens, completionTokens: usage.completionTokens)
        }

        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens"
            case completionTokens = "completion_tokens"
        }
    }
}

/// Hands every chunk to the client first, then to the meter.
struct MeteredBodyWriter: ResponseBodyWriter {
    var base: any ResponseBodyWriter
    let meter: ReplyMeter

    mutating func write(_ buffer: ByteBuffer) async throws {
        try await base.write(buffer)
        meter.observe(buffer)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        // Before the end goes out: a client that has the whole reply finds its usage recorded.
        meter.finish(status: 200)
        try await base.finish(trailingHeaders)
    }
}
