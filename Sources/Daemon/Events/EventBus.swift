import Foundation
import ModeldAPI
import Synchronization

/// The daemon's live events, for `GET /api/v1/events`: what changed, in order, each with an id.
///
/// The last ``capacity`` events are kept, so a client that reconnects with `Last-Event-ID` gets what it
/// missed; one whose id is older than that, or from an earlier daemon process, gets a `reload` event first.
/// Each subscriber has a queue of at most ``queueLimit`` events: a client that reads slower than events come
/// is sent `reload` and dropped, so no reader can hold up the daemon or grow its memory.
///
/// Ids are `<boot>-<n>`: `boot` is random per daemon process, `n` counts from 1.
final class EventBus: Sendable {
    /// One event as the stream sends it.
    struct Event: Sendable, Equatable {
        let id: String
        let type: String
        /// One line of JSON.
        let data: String
    }

    /// What a subscriber receives.
    enum Item: Sendable, Equatable {
        case event(Event)
        /// Nothing happened for a while: a comment keeps the connection (and proxies) from timing out.
        case heartbeat
        /// The subscriber must read the state again; `closes`: the stream ends after it.
        case reload(reason: String, closes: Bool)
    }

    let capacity: Int
    let queueLimit: Int
    let boot: String
    private let state: Mutex<State>

    private struct State {
        var next: UInt64 = 1
        var recent: [Event] = []
        var subscribers: [Int: AsyncStream<Item>.Continuation] = [:]
        var nextSubscriber = 0
    }

    init(capacity: Int = 1024, queueLimit: Int = 256) {
        self.capacity = capacity
        self.queueLimit = queueLimit
        boot = String(UInt32.random(in: .min ... .max), radix: 16)
        state = Mutex(State())
    }

    /// Sends an event to every subscriber and keeps it for those that reconnect.
    func publish(_ type: DaemonEventType, _ data: some Encodable) {
        guard let json = try? WireJSON.encoder().encode(data) else { return }
        let text = String(decoding: json, as: UTF8.self)
        state.withLock { state in
            let event = Event(id: "\(boot)-\(state.next)", type: type.rawValue, data: text)
            state.next += 1
            state.recent.append(event)
            if state.recent.count > capacity { state.recent.removeFirst(state.recent.count - capacity) }
            for key in Array(state.subscribers.keys) {
                deliver(.event(event), to: key, in: &state)
            }
        }
    }

    /// Sends a heartbeat to every subscriber.
    func heartbeat() {
        state.withLock { state in
            for key in Array(state.subscribers.keys) { deliver(.heartbeat, to: key, in: &state) }
        }
    }

    /// The events after `lastEventID` (a `reload` first when they are no longer all kept), then every new one.
    func subscribe(after lastEventID: String?) -> AsyncStream<Item> {
        // Two places more than the limit: an item past it shows the reader is too slow, and the `reload` that tells
        // it so still fits.
        let (stream, continuation) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingOldest(queueLimit + 2))
        let key = state.withLock { state in
            let key = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[key] = continuation
            if let lastEventID {
                for item in missed(after: lastEventID, in: state) { deliver(item, to: key, in: &state) }
            }
            return key
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.subscribers.removeValue(forKey: key) }
        }
        return stream
    }

    /// Ends every subscriber's stream (at shutdown).
    func finishAll() {
        let continuations = state.withLock { state in
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for continuation in continuations { continuation.finish() }
    }

    /// How many clients are subscribed.
    var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// What a client that saw `lastEventID` missed.
    private func missed(after lastEventID: String, in state: State) -> [Item] {
        let parts = lastEventID.split(separator: "-")
        guard parts.count == 2, parts[0] == boot, let seen = UInt64(parts[1]), seen < state.next else {
            return [.reload(reason: "the daemon restarted since event \(lastEventID)", closes: false)]
        }
        // The kept events are numbered `oldest..<next`.
        let oldest = state.next - UInt64(state.recent.count)
        var items: [Item] = []
        if seen + 1 < oldest {
            items.append(.reload(reason: "events after \(lastEventID) are no longer kept", closes: false))
        }
        items += state.recent[Int(max(seen + 1, oldest) - oldest)...].map(Item.event)
        return items
    }

    /// Queues an item for one subscriber; one with more than ``queueLimit`` unread gets `reload` and is dropped.
    private func deliver(_ item: Item, to key: Int, in state: inout State) {
        guard let continuation = state.subscribers[key] else { return }
        if case .enqueued(let remaining) = continuation.yield(item), remaining > 1 { return }
        state.subscribers[key] = nil
        continuation.onTermination = nil
        continuation.yield(.reload(reason: "this client read events slower than they came", closes: true))
        continuation.finish()
    }
}
