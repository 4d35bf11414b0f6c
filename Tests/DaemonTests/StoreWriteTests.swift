import Foundation
import GRDB
import ModeldAPI
import ModeldClient
import Synchronization
import Testing

/// Store writes wait on the store's own threads, never on the event loops that serve HTTP.
@Suite("Store writes off the event loops")
struct StoreWriteTests {
    @Test("while another connection holds the store's write lock, other requests are answered and the waiting writes complete once it is released")
    func answeredWhileWriteHeld() async throws {
        let daemon = try await DaemonProcess()
        do {
            try await Self.holdLockAndRequest(daemon)
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }

    /// What was answered, in the order the answers came.
    private enum Answer: Equatable {
        case read
        case written
        case writeFailed(String)
    }

    private final class Answers: Sendable {
        private let list = Mutex<[Answer]>([])
        func append(_ answer: Answer) { list.withLock { $0.append(answer) } }
        var all: [Answer] { list.withLock { $0 } }
    }

    private static func holdLockAndRequest(_ daemon: DaemonProcess) async throws {
        // A second connection to the daemon's SQLite file takes the write lock and keeps it.
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true
        configuration.busyMode = .timeout(10)
        let holder = try DatabaseQueue(path: daemon.root.appending(path: "modeld.sqlite").path, configuration: configuration)
        try holder.inDatabase { db in try db.execute(sql: "BEGIN IMMEDIATE") }

        let base = "http://127.0.0.1:\(daemon.port)"
        let answers = Answers()
        // More writes in flight than the daemon has event loop threads (one per core): each would hold a loop
        // for as long as the lock is held if writes ran on them.
        let writers = max(8, 4 * ProcessInfo.processInfo.activeProcessorCount)
        // Few enough that the lock is held well within the store's busy timeout (30 s) on a loaded machine.
        let rounds = 5
        let writes = Task {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<writers {
                    group.addTask {
                        do {
                            let client = try ModeldClient(endpoint: DaemonEndpoint(baseURL: base))
                            let _: KeyInfo = try await client.call(
                                "POST", "/api/v1/keys", body: KeyCreateRequest(name: "held-\(index)", scope: "admin"))
                            answers.append(.written)
                        } catch {
                            answers.append(.writeFailed("\(error)"))
                        }
                    }
                }
            }
        }

        // Every write has reached the daemon (and waits on the lock): the requests in flight, this one included.
        var inFlight = 0
        for _ in 0..<600 where inFlight < writers + 1 {
            let text = try await runProcess(URL(filePath: "/usr/bin/curl"), ["-s", "\(base)/metrics"]).stdout
            inFlight = text.firstMatch(of: /\nmodeld_http_requests_in_flight (\d+)/).flatMap { Int($0.1) } ?? 0
            if inFlight < writers + 1 { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(inFlight >= writers + 1, "the writes never all reached the daemon")

        // Requests that need no write lock (a WAL reader is not blocked by a writer): each on its own connection,
        // one after another, while the writes wait.
        for _ in 0..<rounds {
            let client = try ModeldClient(endpoint: DaemonEndpoint(baseURL: base))
            _ = try await client.health()
            _ = try await client.models()
            answers.append(.read)
        }
        let beforeRelease = answers.all
        #expect(beforeRelease == Array(repeating: .read, count: rounds), "a write was answered before the lock was released: \(beforeRelease)")

        try holder.inDatabase { db in try db.execute(sql: "COMMIT") }
        await writes.value
        let after = answers.all.dropFirst(beforeRelease.count)
        #expect(Array(after) == Array(repeating: .written, count: writers), "\(after)")
        let keys = try await holder.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM api_keys") }
        #expect(keys == writers)
    }
}
