import CSystemd
import Foundation
import ServiceLifecycle

/// `sd_notify` messages to the service manager (docs/design/systemd.md, Notification). Every call is a no-op
/// when `NOTIFY_SOCKET` is unset.
///
/// Messages go out in order from a thread of their own: `sd_notify` blocks while the manager's socket queue is full
/// (ten datagrams by default), and the daemon's tasks run on its event loops, which must never wait on it.
struct SystemdNotifier: Sendable {
    private static let queue = DispatchQueue(label: "modeld.sd-notify")

    /// The watchdog interval when systemd asked for pings (`WATCHDOG_USEC`, for this pid).
    let watchdogInterval: Duration?

    init() {
        var usec: UInt64 = 0
        // Keep the variables: a restart of the watchdog loop must see them again.
        let enabled = sd_watchdog_enabled(0, &usec)
        watchdogInterval = enabled > 0 && usec > 0 ? .microseconds(Int64(usec)) : nil
    }

    func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    func status(_ status: String) { send("STATUS=\(status)") }
    func stopping() { send("STOPPING=1\nSTATUS=stopping") }
    func watchdog() { send("WATCHDOG=1") }
    /// Asks for more time to stop (engines can take long to shut down).
    func extendTimeout(_ duration: Duration) {
        let usec = duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
        send("EXTEND_TIMEOUT_USEC=\(usec)")
    }

    private func send(_ message: String) {
        // A status line must stay on one line: newlines would start new assignments.
        Self.queue.async { _ = sd_notify(0, message) }
    }

    /// Waits, at most `timeout`, until every message so far has been handed to the manager (before exiting).
    func flush(timeout: Duration) {
        let sent = DispatchSemaphore(value: 0)
        Self.queue.async { sent.signal() }
        _ = sent.wait(timeout: .now() + .milliseconds(Int(timeout / .milliseconds(1))))
    }
}

/// Tells systemd `STOPPING=1` the moment graceful shutdown begins. Listed last in the service group so
/// that it is the first service told to shut down.
struct StoppingNotifier: Service, CustomStringConvertible {
    let notifier: SystemdNotifier
    /// Answers 503 from then on.
    let readiness: DaemonReadiness
    var description: String { "StoppingNotifier" }

    func run() async throws {
        try? await gracefulShutdown()
        readiness.stopping()
        notifier.stopping()
    }
}
