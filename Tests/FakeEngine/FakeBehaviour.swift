import Foundation

/// The misbehaviour asked for through the environment.
struct FakeBehaviour: Sendable {
    var startDelay: Double
    /// Seconds after start from which `/health` hangs; nil never.
    var hangHealthAfter: Double?
    var startedAt: Date
    /// Where to append the body of every completion request, one line each.
    var requestLog: String?
    /// Seconds a chat completion that is not streamed takes before its reply.
    var replyDelay: Double
    /// A chat completion that is not streamed replies only once the request log holds this many lines (every
    /// engine of a test shares the log), or after 30 s.
    var holdUntilLogged: Int?
    /// Where to append the `traceparent` header of every completion request (`-` when it has none), one line each.
    var traceLog: String?

    init(environment: [String: String], startedAt: Date) {
        startDelay = environment["FAKE_ENGINE_START_DELAY"].flatMap(Double.init) ?? 0
        switch environment["FAKE_ENGINE_HANG_HEALTH"] {
        case "1": hangHealthAfter = 0
        case let value? where value.hasPrefix("after:"): hangHealthAfter = Double(value.dropFirst(6))
        default: hangHealthAfter = nil
        }
        self.startedAt = startedAt
        requestLog = environment["FAKE_ENGINE_REQUEST_LOG"]
        replyDelay = environment["FAKE_ENGINE_REPLY_DELAY"].flatMap(Double.init) ?? 0
        holdUntilLogged = environment["FAKE_ENGINE_HOLD_UNTIL_LOGGED"].flatMap { Int($0) }
        traceLog = environment["FAKE_ENGINE_TRACE_LOG"]
    }

    var elapsed: Double { Date().timeIntervalSince(startedAt) }
    var isStarting: Bool { elapsed < startDelay }
    var healthHangs: Bool { hangHealthAfter.map { elapsed >= $0 } ?? false }
}
