import Synchronization

/// What one gateway request came to, once its reply has ended: the one place where the gateway knows who asked,
/// for what, which backend answered, and what it cost. Usage accounting records these.
struct RequestOutcome: Sendable {
    /// The API key's id; nil on the control socket or while no key exists.
    var keyID: String?
    /// The model as the request named it.
    var model: String
    /// `local:<run name>` or `upstream:<name>`; nil when no backend answered.
    var backend: String?
    var promptTokens: Int?
    var completionTokens: Int?
    /// From the request's arrival to the end of its reply.
    var latency: Duration
    /// The status the client got (499: it went away before the end).
    var status: Int
    /// At the upstream's prices (cost_in, cost_out per million tokens); 0 for local runs.
    var cost: Double
}

/// Hands every ``RequestOutcome`` to the observers registered at start-up.
final class RequestOutcomes: Sendable {
    private let observers = Mutex<[@Sendable (RequestOutcome) -> Void]>([])
    private let observed = Atomic(false)

    /// Whether anyone listens: the gateway's fast path skips building outcomes otherwise.
    var isObserved: Bool { observed.load(ordering: .relaxed) }

    func observe(_ observer: @escaping @Sendable (RequestOutcome) -> Void) {
        observers.withLock { $0.append(observer) }
        observed.store(true, ordering: .relaxed)
    }

    func record(_ outcome: RequestOutcome) {
        guard isObserved else { return }
        for observer in observers.withLock({ $0 }) { observer(outcome) }
    }
}
