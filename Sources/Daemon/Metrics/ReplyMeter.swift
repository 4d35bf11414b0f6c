import Foundation
import Hummingbird
import NIOCore

extension DaemonMetrics {
    /// Wraps a relayed streamed gateway reply (SSE) so that its tokens and its time to first token are counted
    /// as its bytes pass. Each chunk is examined after it has been handed to the client, so nothing is held
    /// back or delayed. A reply that is not streamed is counted by ``recordUsage(ofReply:model:)``.
    /// - Parameters:
    ///   - model: the `model` label (the model the run serves, as it was started).
    ///   - started: when the gateway received the request.
    func meterReply(_ response: Response, model: String, started: ContinuousClock.Instant) -> Response {
        guard (200..<300).contains(response.status.code),
            response.headers[.contentType]?.lowercased().hasPrefix("text/event-stream") == true
        else { return response }
        var response = response
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            let meter = ReplyMeter(model: model, started: started, metrics: self)
            // Also when the client goes away mid-stream: what it was sent is counted.
            defer { meter.finish() }
            try await body.write(MeteredBodyWriter(base: writer, meter: meter))
        }
        return response
    }
}

/// Reads one streamed gateway reply (SSE) as it is relayed and records its token usage in ``DaemonMetrics``.
///
/// The reply is read event by event: the last `usage` it carries (a final chunk when the client asked for
/// `stream_options.include_usage`) gives both counts; without one, each chunk with content counts as one
/// completion token. The first chunk with content gives the time to first token.
final class ReplyMeter {
    let model: String
    let started: ContinuousClock.Instant
    let metrics: DaemonMetrics
    private let decoder = JSONDecoder()
    /// The reply split into events; a line longer than ``ServerSentEvents/maxLineBytes`` stops its reading.
    private var events = ServerSentEvents()
    private var givenUp = false
    private var usage: Usage?
    private var contentChunks = 0

    init(model: String, started: ContinuousClock.Instant, metrics: DaemonMetrics) {
        self.model = model
        self.started = started
        self.metrics = metrics
    }

    func observe(_ chunk: ByteBuffer) {
        guard !givenUp else { return }
        for payload in events.feed(chunk) { event(payload) }
        if events.buffered > ServerSentEvents.maxLineBytes {
            givenUp = true
            events = ServerSentEvents()
        }
    }

    /// Records what the reply said; called once, when the body is done or broken off.
    func finish() {
        if let usage {
            metrics.recordUsage(usage, model: model)
        } else {
            metrics.recordTokens(model: model, kind: .completion, count: contentChunks)
        }
    }

    /// One SSE event's payload: `{json}` chunks are read; `[DONE]` is not.
    private func event(_ payload: String) {
        guard payload.first == "{", let chunk = try? decoder.decode(ReplyChunk.self, from: Data(payload.utf8)) else { return }
        if let usage = chunk.usage { self.usage = usage }
        if chunk.choices?.contains(where: \.hasContent) == true {
            contentChunks += 1
            if contentChunks == 1 { metrics.recordTimeToFirstToken(model: model, ContinuousClock.now - started) }
        }
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
    struct Usage: Decodable {
        var promptTokens: Int?
        var completionTokens: Int?

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
        try await base.finish(trailingHeaders)
    }
}
