import Foundation
import Hummingbird
import NIOCore

extension DaemonMetrics {
    /// Wraps a relayed gateway reply so that its tokens, and for a streamed reply its time to first token, are
    /// counted as its bytes pass. Each chunk is examined after it has been handed to the client, so nothing
    /// is held back or delayed.
    /// - Parameters:
    ///   - model: the `model` label (the model the run serves, as it was started).
    ///   - started: when the gateway received the request.
    func meterReply(_ response: Response, model: String, started: ContinuousClock.Instant) -> Response {
        guard (200..<300).contains(response.status.code), let format = ReplyMeter.Format(contentType: response.headers[.contentType]) else {
            return response
        }
        var response = response
        let body = response.body
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            let meter = ReplyMeter(format: format, model: model, started: started, metrics: self)
            // Also when the client goes away mid-stream: what it was sent is counted.
            defer { meter.finish() }
            try await body.write(MeteredBodyWriter(base: writer, meter: meter))
        }
        return response
    }
}

/// Reads one gateway reply as it is relayed and records its token usage in ``DaemonMetrics``.
///
/// A JSON reply is kept (up to ``maxJSONBytes``) and its `usage` read at the end. An SSE reply is read
/// event by event: the last `usage` it carries (a final chunk when the client asked for
/// `stream_options.include_usage`) gives both counts; without one, each chunk with content counts as one
/// completion token. The first chunk with content gives the time to first token.
final class ReplyMeter {
    enum Format {
        case json, events

        init?(contentType: String?) {
            guard let type = contentType?.lowercased() else { return nil }
            if type.hasPrefix("text/event-stream") {
                self = .events
            } else if type.hasPrefix("application/json") {
                self = .json
            } else {
                return nil
            }
        }
    }

    /// A JSON reply larger than this is relayed without being counted (embeddings of many inputs).
    static let maxJSONBytes = 8 << 20

    let format: Format
    let model: String
    let started: ContinuousClock.Instant
    let metrics: DaemonMetrics
    private let decoder = JSONDecoder()
    /// The JSON reply so far.
    private var pending = ByteBuffer()
    /// The SSE reply split into events; a line longer than ``ServerSentEvents/maxLineBytes`` stops its reading.
    private var events = ServerSentEvents()
    private var givenUp = false
    private var usage: Usage?
    private var contentChunks = 0

    init(format: Format, model: String, started: ContinuousClock.Instant, metrics: DaemonMetrics) {
        self.format = format
        self.model = model
        self.started = started
        self.metrics = metrics
    }

    func observe(_ chunk: ByteBuffer) {
        guard !givenUp else { return }
        switch format {
        case .json:
            guard pending.readableBytes + chunk.readableBytes <= Self.maxJSONBytes else {
                giveUp()
                return
            }
            pending.writeImmutableBuffer(chunk)
        case .events:
            for payload in events.feed(chunk) { event(payload) }
            if events.buffered > ServerSentEvents.maxLineBytes { giveUp() }
        }
    }

    /// Records what the reply said; called once, when the body is done or broken off.
    func finish() {
        if format == .json, !givenUp {
            let body = pending.withUnsafeReadableBytes { Data($0) }
            usage = (try? decoder.decode(ReplyChunk.self, from: body))?.usage
        }
        if let usage {
            metrics.recordTokens(model: model, kind: .prompt, count: usage.promptTokens ?? 0)
            metrics.recordTokens(model: model, kind: .completion, count: usage.completionTokens ?? 0)
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

    private func giveUp() {
        givenUp = true
        pending = ByteBuffer()
        events = ServerSentEvents()
    }

    /// The parts of an OpenAI reply or stream chunk that are counted.
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
