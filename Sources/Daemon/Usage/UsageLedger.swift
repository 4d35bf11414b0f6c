import Foundation
import Logging
import ModelStore
import ModeldAPI
import NIOCore
import ServiceLifecycle
import Synchronization

/// Usage accounting and the quotas of API keys (docs/usage.md).
///
/// Every request that reached a backend (the gateway's router and fast path, the LLM API, the Ollama API) is
/// recorded here when it ends (``record(_:)``): a lock, an append and a few additions, with no actor, task or
/// database work, so that the fast path stays fast. The rows go to the store in batches, off the event loops: when
/// ``batchSize`` are pending, every ``flushInterval`` (``UsageWriter``), and at shutdown. Rows older than the
/// retention are summed per day (``rollUp()``).
///
/// Each key's tokens in the current UTC day and month, and its cost in the month, are kept in memory, seeded from the
/// store at start-up (``seed()``): ``denial(for:)`` checks a key's quotas against them without touching the store.
final class UsageLedger: Sendable {
    /// One finished request.
    struct Entry: Sendable {
        var keyID: String?
        var model: String
        var backend: String
        var route: String
        var promptTokens: Int
        var completionTokens: Int
        var latency: Duration
        var status: Int
        /// The backend's prices per million prompt and completion tokens (an upstream's `cost_in` and `cost_out`;
        /// 0 for local runs): the row's cost, once its prompt is counted.
        var costIn = 0.0
        var costOut = 0.0

        /// What the request cost at its backend's prices.
        var cost: Double { (Double(max(0, promptTokens)) * costIn + Double(max(0, completionTokens)) * costOut) / 1_000_000 }
    }

    /// Where a request's prompt can be counted when its backend gives no count: the body and the model's directory.
    struct PromptSource: Sendable {
        var body: ByteBuffer
        var modelPath: String
    }

    /// A quota a request is over: the 429's message and when the quota resets.
    struct Denial: Sendable, Equatable {
        var message: String
        var retryAfter: Int
    }

    private struct Counter {
        var day: Int
        var month: Int
        var usage = KeyUsage()
    }

    private struct State {
        var pending: [UsageRecord] = []
        var counters: [String: Counter] = [:]
        /// Requests whose prompt is still to be counted, with when they ended.
        var uncounted: [(entry: Entry, source: PromptSource, at: Date)] = []
        var uncountedBytes = 0
        /// Prompts being counted (taken from `uncounted`, not recorded yet), and who waits until there are none.
        var counting = 0
        var countingWaiters: [CheckedContinuation<Void, Never>] = []
    }

    let store: Store
    /// How long rows are kept one per request before they are summed per day.
    let retention: Duration
    let logger: Logger
    /// The time; tests set it to move days and months without waiting.
    let now: @Sendable () -> Date
    private let state = Mutex(State())
    private let prompts = PromptCounter()

    /// Rows written at once when this many are pending.
    static let batchSize = 256
    /// The longest a row waits before it is written.
    static let flushInterval: Duration = .seconds(1)
    /// How often old rows are rolled up.
    static let rollUpInterval: Duration = .seconds(3600)
    /// Rows kept when the store refuses writes: beyond this many, the oldest are dropped (and logged).
    static let maxPending = 100_000
    /// The most request bytes held for prompts still to be counted; beyond it, a prompt is recorded uncounted (0).
    static let maxUncountedBytes = 64 << 20

    /// The routes whose requests reach a backend: their keys' token and spending quotas apply.
    static let meteredPaths: Set<String> = Set(GatewayController.engineRoutes).union([
        "/api/v1/llm/generate", "/api/v1/llm/chat", "/api/v1/llm/structured-generate", "/api/chat", "/api/generate", "/api/embed",
        "/api/embeddings", "/generate", ChatSocket.path,
    ])

    init(store: Store, retention: Duration, logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) {
        self.store = store
        self.retention = retention
        self.logger = logger
        self.now = now
    }

    // MARK: Recording

    /// Records a finished request: counted against its key's quotas at once, written to the store with the next batch.
    func record(_ entry: Entry) { record(entry, at: now()) }

    /// Records a finished request whose backend did not count its prompt: the writer counts it with the model's
    /// tokenizer (``countPrompts()``), then records it.
    func record(_ entry: Entry, countingPromptOf source: PromptSource) {
        let at = now()
        let held = state.withLock { state in
            guard state.uncountedBytes + source.body.readableBytes <= Self.maxUncountedBytes else { return false }
            state.uncounted.append((entry, source, at))
            state.uncountedBytes += source.body.readableBytes
            return true
        }
        if !held { record(entry, at: at) }
    }

    /// Counts the prompts of the requests recorded with ``record(_:countingPromptOf:)`` and records them.
    func countPrompts() async {
        let uncounted = state.withLock { state in
            defer {
                state.counting += state.uncounted.count
                state.uncounted = []
                state.uncountedBytes = 0
            }
            return state.uncounted
        }
        for (entry, source, at) in uncounted {
            var counted = entry
            counted.promptTokens = await prompts.count(body: source.body, route: entry.route, modelPath: source.modelPath) ?? 0
            record(counted, at: at)
            let waiters = state.withLock { state in
                state.counting -= 1
                guard state.counting == 0 else { return [CheckedContinuation<Void, Never>]() }
                defer { state.countingWaiters = [] }
                return state.countingWaiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    private func record(_ entry: Entry, at: Date) {
        let record = UsageRecord(
            at: at, keyID: entry.keyID ?? "", model: entry.model, backend: entry.backend, route: entry.route,
            promptTokens: max(0, entry.promptTokens), completionTokens: max(0, entry.completionTokens),
            latencyMs: Double(entry.latency.components.seconds) * 1000 + Double(entry.latency.components.attoseconds) / 1e15,
            status: entry.status, cost: entry.cost)
        let (day, month) = Self.period(at)
        let batch: [UsageRecord]? = state.withLock { state in
            if let key = entry.keyID {
                var counter = state.counters[key].map { Self.rolled($0, day: day, month: month) } ?? Counter(day: day, month: month)
                let tokens = record.promptTokens + record.completionTokens
                counter.usage.dayTokens += tokens
                counter.usage.monthTokens += tokens
                counter.usage.monthCost += record.cost
                state.counters[key] = counter
            }
            state.pending.append(record)
            guard state.pending.count >= Self.batchSize else { return nil }
            defer { state.pending = [] }
            return state.pending
        }
        if let batch { write(batch) }
    }

    /// Writes the pending rows now, without waiting for them.
    func flush() {
        let batch = state.withLock { state in
            defer { state.pending = [] }
            return state.pending
        }
        write(batch)
    }

    /// Counts the prompts still to count, writes the pending rows and waits until every row recorded before is in the
    /// store.
    func flushed() async {
        await countPrompts()
        // Prompts the writer took before are recorded too.
        await withCheckedContinuation { waiter in
            let counted = state.withLock { state in
                if state.counting > 0 { state.countingWaiters.append(waiter) }
                return state.counting == 0
            }
            if counted { waiter.resume() }
        }
        flush()
        await store.writesFinished()
    }

    /// Writes a batch on the store's writer thread; a failed write puts it back to be tried with the next one.
    private func write(_ batch: [UsageRecord]) {
        guard !batch.isEmpty else { return }
        store.insertUsage(batch) { [self] result in
            guard case .failure(let error) = result else { return }
            let dropped: Int = state.withLock { state in
                state.pending.insert(contentsOf: batch, at: 0)
                let excess = max(0, state.pending.count - Self.maxPending)
                state.pending.removeFirst(excess)
                return excess
            }
            logger.warning("usage rows not written; retrying with the next batch", metadata: ["error": "\(error)", "dropped": "\(dropped)"])
        }
    }

    // MARK: Quotas

    /// Reads each key's use in the current UTC day and month from the store.
    func seed() async throws {
        let at = now()
        let (day, month) = Self.period(at)
        let usage = try await store.keyUsage(dayStart: Self.dayStart(day), monthStart: Self.monthStart(month))
        state.withLock { state in
            state.counters = usage.mapValues { Counter(day: day, month: month, usage: $0) }
        }
    }

    /// A key's use in the current UTC day and month, as its quotas see it.
    func usage(ofKey id: String) -> KeyUsage {
        let (day, month) = Self.period(now())
        return state.withLock { state in state.counters[id].map { Self.rolled($0, day: day, month: month).usage } ?? KeyUsage() }
    }

    /// The first of a key's token and spending quotas that its use has reached, or nil.
    func denial(for key: APIKeyRecord) -> Denial? {
        guard key.tokensPerDay != nil || key.tokensPerMonth != nil || key.spendCap != nil else { return nil }
        let at = now()
        let (day, month) = Self.period(at)
        let used = usage(ofKey: key.id)
        if let limit = key.tokensPerDay, used.dayTokens >= limit {
            return Self.denial(
                "API key \(key.name) has used its \(limit) tokens per day (\(used.dayTokens) used)", resets: Self.dayStart(day + 1), now: at)
        }
        if let limit = key.tokensPerMonth, used.monthTokens >= limit {
            return Self.denial(
                "API key \(key.name) has used its \(limit) tokens per month (\(used.monthTokens) used)", resets: Self.monthStart(month + 1), now: at)
        }
        if let cap = key.spendCap, used.monthCost >= cap {
            return Self.denial(
                "API key \(key.name) has reached its spending cap of \(Self.amount(cap)) per month (\(Self.amount(used.monthCost)) spent)",
                resets: Self.monthStart(month + 1), now: at)
        }
        return nil
    }

    private static func denial(_ what: String, resets: Date, now: Date) -> Denial {
        let seconds = max(1, Int(resets.timeIntervalSince(now).rounded(.up)))
        let time = UTCTime(seconds: Int(resets.timeIntervalSince1970)).dateTime(separator: "T") + "Z"
        return Denial(message: "\(what); it resets at \(time) (in \(seconds) s)", retryAfter: seconds)
    }

    private static func amount(_ value: Double) -> String {
        String(format: "%.4f", value).replacingOccurrences(of: #"\.?0+$"#, with: "", options: .regularExpression)
    }

    // MARK: Roll-up

    /// Sums the rows older than the retention (from the start of their UTC day) per day, key, model and backend.
    func rollUp() async throws {
        let (day, _) = Self.period(now().addingTimeInterval(-Double(retention.components.seconds)))
        let rolled = try await store.rollUpUsage(before: Self.dayStart(day))
        if rolled > 0 { logger.info("usage rolled up per day", metadata: ["rows": "\(rolled)"]) }
    }

    // MARK: Days and months (UTC)

    /// The UTC day (days since 1970-01-01) and month (`year * 12 + month - 1`) of a time.
    static func period(_ date: Date) -> (day: Int, month: Int) {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        let time = UTCTime(seconds: seconds)
        return (Int((Double(seconds) / 86400).rounded(.down)), time.year * 12 + time.month - 1)
    }

    static func dayStart(_ day: Int) -> Date { Date(timeIntervalSince1970: Double(day) * 86400) }

    static func monthStart(_ month: Int) -> Date {
        var parts = tm()
        parts.tm_year = Int32(month / 12 - 1900)
        parts.tm_mon = Int32(month % 12)
        parts.tm_mday = 1
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }

    /// A counter moved to the current day and month: what belonged to earlier ones no longer counts.
    private static func rolled(_ counter: Counter, day: Int, month: Int) -> Counter {
        var counter = counter
        if counter.day != day {
            counter.day = day
            counter.usage.dayTokens = 0
        }
        if counter.month != month {
            counter.month = month
            counter.usage.monthTokens = 0
            counter.usage.monthCost = 0
        }
        return counter
    }
}

/// Writes the ledger's rows every ``UsageLedger/flushInterval`` and rolls old ones up every
/// ``UsageLedger/rollUpInterval``; on shutdown, once the listeners have drained, writes what is left.
struct UsageWriter: Service, CustomStringConvertible {
    let ledger: UsageLedger
    var description: String { "UsageWriter" }

    func run() async throws {
        await rollUp()
        try? await cancelWhenGracefulShutdown {
            var lastRollUp = ContinuousClock.now
            while !Task.isCancelled {
                try await Task.sleep(for: UsageLedger.flushInterval)
                await ledger.countPrompts()
                ledger.flush()
                if ContinuousClock.now - lastRollUp >= UsageLedger.rollUpInterval {
                    lastRollUp = .now
                    await rollUp()
                }
            }
        }
        await ledger.flushed()
    }

    private func rollUp() async {
        do {
            try await ledger.rollUp()
        } catch {
            ledger.logger.warning("usage not rolled up", metadata: ["error": "\(error)"])
        }
    }
}

/// One request's account, from the choice of its backend to its end (``UsageLedger/record(_:)``).
struct UsageTicket: Sendable {
    let ledger: UsageLedger
    let keyID: String?
    /// The model the backend serves (a run's model as it was started).
    let model: String
    let backend: String
    let route: String
    let started: ContinuousClock.Instant
    /// Where the prompt can be counted when the backend gives no count.
    var prompt: UsageLedger.PromptSource? = nil
    /// An upstream's prices per million prompt and completion tokens (`--cost-in`, `--cost-out`).
    var costIn = 0.0
    var costOut = 0.0
    /// Where an upstream's token and cost counters go (`modeld_backend_tokens_total`, `modeld_backend_cost_total`).
    var metrics: DaemonMetrics? = nil

    /// The backend name of a local run.
    static func backend(run name: String) -> String { "local:\(name)" }

    /// Records the request's end. Without the engine's count, each streamed chunk with content is one completion token
    /// and the prompt is counted with the model's tokenizer (when ``prompt`` is known).
    func record(status: Int, usage: ReplyMeter.Usage?, contentChunks: Int = 0) {
        let entry = UsageLedger.Entry(
            keyID: keyID, model: model, backend: backend, route: route, promptTokens: usage?.promptTokens ?? 0,
            completionTokens: usage?.completionTokens ?? contentChunks, latency: .now - started, status: status, costIn: costIn, costOut: costOut)
        if let metrics, let usage, (200..<300).contains(status) {
            metrics.recordBackendUsage(backend: backend, usage: usage, costIn: costIn, costOut: costOut)
        }
        if usage?.promptTokens == nil, let prompt {
            ledger.record(entry, countingPromptOf: prompt)
        } else {
            ledger.record(entry)
        }
    }
}
