import GRDB
import Logging
import ModelStore
import NIOCore
import NIOPosix
import ServiceLifecycle

/// Pings systemd's watchdog at half its interval, but only after the parts that would stall in a hung
/// daemon answer: a round trip through the event loops that serve HTTP, and a read of the store. A daemon
/// wedged in either stops pinging, and systemd restarts it (docs/design/systemd.md, Watchdog).
struct Watchdog: Service, CustomStringConvertible {
    let interval: Duration
    let store: Store
    let notifier: SystemdNotifier
    let logger: Logger

    var description: String { "Watchdog(\(interval))" }

    func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // Stops pinging as soon as shutdown begins (systemd then waits for TimeoutStopSec, not the watchdog).
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    for loop in group.makeIterator() {
                        try await loop.submit {}.get()
                    }
                    _ = try await store.read { db in try Int.fetchOne(db, sql: "SELECT 1") }
                    notifier.watchdog()
                    try await Task.sleep(for: interval / 2)
                }
            }
        } catch is CancellationError {
            // Shutdown: the sleep was cancelled. Any other error (the store) ends the service and is logged.
        }
    }
}
