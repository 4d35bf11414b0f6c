import FakeHub
import Foundation
import ModeldAPI
import ModeldClient
import Synchronization
import Testing

@testable import Daemon

@Suite("The event stream")
struct EventStreamTests {
    /// Collects what a stream delivers until `count` items came (or it ended).
    static func take(_ count: Int, from stream: AsyncStream<EventBus.Item>) async -> [EventBus.Item] {
        var items: [EventBus.Item] = []
        for await item in stream {
            items.append(item)
            if items.count == count { break }
        }
        return items
    }

    static func ids(_ items: [EventBus.Item]) -> [String] {
        items.compactMap { if case .event(let event) = $0 { event.id } else { nil } }
    }

    @Test("events come in order with increasing ids; Last-Event-ID resumes after it; a gap or another boot says reload")
    func resume() async throws {
        let bus = EventBus(capacity: 4, queueLimit: 16)
        let live = bus.subscribe(after: nil)
        for index in 1...6 { bus.publish(.keyCreated, RunRemoved(runID: "r\(index)", name: "n\(index)")) }
        let seen = await Self.take(6, from: live)
        #expect(Self.ids(seen) == (1...6).map { "\(bus.boot)-\($0)" })
        guard case .event(let first) = seen[0] else {
            Issue.record("not an event")
            return
        }
        #expect(first.type == "key.created" && first.data == #"{"name":"n1","run_id":"r1"}"#)

        // Kept: 3...6. After 4: 5 and 6.
        let resumed = await Self.take(2, from: bus.subscribe(after: "\(bus.boot)-4"))
        #expect(Self.ids(resumed) == ["\(bus.boot)-5", "\(bus.boot)-6"])
        // After 1: 2 is gone, so reload first, then what is kept.
        let gap = await Self.take(5, from: bus.subscribe(after: "\(bus.boot)-1"))
        guard case .reload(_, closes: false) = gap[0] else {
            Issue.record("expected reload, got \(gap[0])")
            return
        }
        #expect(Self.ids(gap) == (3...6).map { "\(bus.boot)-\($0)" })
        // An id of another daemon process, or nonsense: reload, then live events.
        for stale in ["0badf00d-3", "garbage", "\(bus.boot)-99"] {
            let stream = bus.subscribe(after: stale)
            bus.publish(.keyRevoked, RunRemoved(runID: "x", name: "x"))
            let items = await Self.take(2, from: stream)
            guard case .reload = items[0], case .event = items[1] else {
                Issue.record("\(stale): \(items)")
                return
            }
        }
        // Caught up exactly: nothing replayed.
        let upToDate = bus.subscribe(after: "\(bus.boot)-9")
        bus.publish(.keyRevoked, RunRemoved(runID: "y", name: "y"))
        #expect(Self.ids(await Self.take(1, from: upToDate)) == ["\(bus.boot)-10"])
    }

    @Test("a reader slower than the events is sent reload and dropped; the others go on; nothing waits for it")
    func slowReader() async throws {
        let bus = EventBus(capacity: 8, queueLimit: 5)
        let slow = bus.subscribe(after: nil)
        let fast = bus.subscribe(after: nil)
        var fastSeen: [EventBus.Item] = []
        var fastIterator = fast.makeAsyncIterator()
        for index in 1...20 {
            bus.publish(.runRemoved, RunRemoved(runID: "r\(index)", name: "n"))
            if let item = await fastIterator.next() { fastSeen.append(item) }
        }
        #expect(Self.ids(fastSeen).count == 20)
        #expect(bus.subscriberCount == 1, "the slow one was dropped")
        var slowItems: [EventBus.Item] = []
        for await item in slow { slowItems.append(item) }
        #expect(Self.ids(slowItems) == (1...6).map { "\(bus.boot)-\($0)" }, "its queue, then the event that overflowed it")
        #expect(slowItems.last == .reload(reason: "this client read events slower than they came", closes: true))
        bus.finishAll()
        #expect(await fastIterator.next() == nil)
    }

    /// `curl -N` reading the daemon's event stream, its output kept as it arrives.
    final class StreamReader: Sendable {
        let process: Process
        private let output = Output()

        private final class Output: Sendable {
            let data = Mutex(Data())
        }

        convenience init(_ daemon: DaemonProcess, lastEventID: String? = nil) throws {
            var arguments = ["-sN", "http://127.0.0.1:\(daemon.port)/api/v1/events"]
            if let lastEventID { arguments += ["-H", "Last-Event-ID: \(lastEventID)"] }
            try self.init(URL(filePath: "/usr/bin/curl"), arguments)
        }

        /// Any long-running command, its standard output kept as it arrives.
        init(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws {
            process = Process()
            process.executableURL = executable
            process.arguments = arguments
            if let environment { process.environment = environment }
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let reader = pipe.fileHandleForReading
            Thread { [output] in
                forEachChunk(of: reader) { chunk in
                    output.data.withLock { $0.append(chunk) }
                    return true
                }
            }.start()
        }

        /// Everything read so far.
        var text: String { String(decoding: output.data.withLock { $0 }, as: UTF8.self) }

        /// The complete events so far: (id, event, data).
        var events: [(id: String?, type: String, data: String)] {
            var events: [(String?, String, String)] = []
            for block in text.components(separatedBy: "\n\n").dropLast() {
                var id: String?
                var type: String?
                var data = ""
                for line in block.split(separator: "\n") {
                    if line.hasPrefix("id: ") { id = String(line.dropFirst(4)) }
                    if line.hasPrefix("event: ") { type = String(line.dropFirst(7)) }
                    if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
                }
                if let type { events.append((id, type, data)) }
            }
            return events
        }

        /// Waits until an event satisfies `condition` (the stream is live: no fixed wait).
        func waitFor(_ what: String, _ condition: (String, String) -> Bool) async throws {
            for _ in 0..<600 {
                if events.contains(where: { condition($0.type, $0.data) }) { return }
                try await Task.sleep(for: .milliseconds(50))
            }
            Issue.record("no \(what) event in: \(events.map(\.type))")
            throw CancellationError()
        }

        /// SIGKILL: a child of the test runner may inherit an ignored SIGTERM.
        func stop() async throws {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            try await waitForExit(process)
        }
    }

    /// Waits until `condition` holds (something live: no fixed wait).
    static func waitUntil(_ what: String, seeing output: () -> String = { "" }, _ condition: () -> Bool) async throws {
        for _ in 0..<600 {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting for \(what); output:\n\(output())")
        throw CancellationError()
    }

    @Test("a pull, a start and stop, keys and a removal show up on the stream in order; a reconnect resumes")
    func liveDaemon() async throws {
        let fakeEngine = productsDirectory.appending(path: "fake-engine").path
        try await FakeHub.withRunning { hub in
            hub.addRepo(
                "acme/events",
                commits: [FakeCommit(files: [FakeFile("config.json", "{}"), FakeFile("model.safetensors", Data(count: 3 << 20), lfs: true)])])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint, "MODELD_VLLM_COMMAND": fakeEngine])
            let reader = try StreamReader(daemon)
            do {
                #expect(try await daemon.modelctl(["pull", "acme/events"]).status == 0)
                try await reader.waitFor("version.added") { type, data in type == "version.added" && data.contains("acme/events") }
                // `modelctl ps --watch` prints the list again as the run changes.
                let watcher = try StreamReader(
                    productsDirectory.appending(path: "modelctl"), ["ps", "--watch"],
                    environment: ["HOME": daemon.root.path, "MODELD_CONTROL_SOCKET": daemon.root.appending(path: "modeld.sock").path])
                try await Self.waitUntil("the first list", seeing: { watcher.text }) { watcher.text.contains("RUN_ID") }
                let started = try await daemon.modelctl(["start", "acme/events", "--engine", "vllm", "--name", "ev", "--wait"])
                #expect(started.status == 0, "\(started.stderr)")
                try await reader.waitFor("run ready") { type, data in type == "run.changed" && data.contains(#""state":"ready""#) }
                try await Self.waitUntil("ps --watch to show ev ready", seeing: { watcher.text }) {
                    watcher.text.contains(/\sev +acme\/events +vllm +ready\s/)
                }
                #expect(try await daemon.modelctl(["stop", "ev"]).status == 0)
                try await reader.waitFor("run stopped") { type, data in type == "run.changed" && data.contains(#""state":"stopped""#) }
                try await Self.waitUntil("ps --watch to show ev stopped", seeing: { watcher.text }) {
                    watcher.text.contains(/\sev +acme\/events +vllm +stopped\s/)
                }
                #expect(watcher.text.components(separatedBy: "RUN_ID").count - 1 >= 3, "printed again on each change: \(watcher.text)")
                try await watcher.stop()
                let key = try await daemon.modelctl(["keys", "create", "--name", "watcher"])
                let value = String(key.stdout.split(separator: "\n").last ?? "")
                try await reader.waitFor("key.created") { type, data in type == "key.created" && data.contains("watcher") }
                #expect(!reader.events.contains { $0.data.contains(value) }, "a key's value never goes out on the stream")
                #expect(try await daemon.modelctl(["keys", "revoke", "watcher"]).status == 0)
                try await reader.waitFor("key.revoked") { type, _ in type == "key.revoked" }
                #expect(try await daemon.modelctl(["rm", "acme/events"]).status == 0)
                try await reader.waitFor("version.removed") { type, data in type == "version.removed" && data.contains("acme/events") }

                let events = reader.events
                let types = events.map(\.type)
                let order = ["pull.progress", "pull.done", "version.added", "run.changed", "key.created", "key.revoked", "version.removed"]
                let firstIndexes = order.map { name in types.firstIndex(of: name) ?? -1 }
                #expect(firstIndexes == firstIndexes.sorted() && !firstIndexes.contains(-1), "\(types)")
                let states = events.filter { $0.type == "run.changed" }.compactMap { $0.data.firstMatch(of: /"state":"(\w+)"/).map { String($0.1) } }
                #expect(states.first == "starting" && states.contains("ready") && states.last == "stopped", "\(states)")
                let numbers = events.compactMap { $0.id?.split(separator: "-").last.flatMap { Int($0) } }
                #expect(numbers == Array(numbers.sorted()) && Set(numbers).count == numbers.count, "ids increase: \(numbers)")

                // Reconnect after the key was created: exactly what came after it, in the same order.
                let keyEvent = try #require(events.first { $0.type == "key.created" })
                let after = Array(events.drop { $0.id != keyEvent.id }.dropFirst())
                let resumed = try StreamReader(daemon, lastEventID: keyEvent.id)
                try await resumed.waitFor("version.removed") { type, _ in type == "version.removed" }
                #expect(resumed.events.map(\.id) == after.map(\.id))
                try await resumed.stop()
            } catch {
                try await reader.stop()
                try await daemon.stop()
                throw error
            }
            try await reader.stop()
            try await daemon.stop()
        }
    }
}
