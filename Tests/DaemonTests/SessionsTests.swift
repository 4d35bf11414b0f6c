import FakeHub
import Foundation
import ModeldAPI
import Synchronization
import Testing

@testable import Daemon

/// Conversation sessions (`/api/v1/sessions`) against a real daemon with the built-in engine on the tiny model.
@Suite("Sessions")
struct SessionsTests {
    typealias Reply = LLMAPITests.Reply

    /// Sends a request with curl; `body` nil sends none.
    static func call(_ daemon: DaemonProcess, _ method: String, _ path: String, _ body: [String: Any]? = nil, key: String? = nil) async throws
        -> Reply
    {
        var arguments = ["-s", "-N", "-X", method, "-o", "/dev/stdout", "-w", "\n%{http_code}", "http://127.0.0.1:\(daemon.port)\(path)"]
        if let body { arguments += ["-H", "Content-Type: application/json", "--data-binary", try LLMAPITests.json(body)] }
        if let key { arguments += ["-H", "Authorization: Bearer \(key)"] }
        let result = try await runProcess(URL(filePath: "/usr/bin/curl"), arguments)
        var lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        let status = Int(lines.popLast() ?? "") ?? 0
        return Reply(status: status, body: lines.joined(separator: "\n"))
    }

    static func messages(_ reply: Reply) -> [[String: Any]] { reply.data["messages"] as? [[String: Any]] ?? [] }

    /// Starts a message with curl; when streamed, returns once its first delta line has arrived: the reply is being
    /// generated. The caller ends it (kills curl, or stops the reply) and reads the rest with `finish`.
    final class OpenStream: Sendable {
        let process: Process
        private let output = Output()
        private let lines = AsyncStream<Void>.makeStream()

        private final class Output: Sendable {
            let data = Mutex(Data())
        }

        init(_ daemon: DaemonProcess, session: String, body: [String: Any]) async throws {
            process = Process()
            process.executableURL = URL(filePath: "/usr/bin/curl")
            process.arguments = [
                "-s", "-N", "-H", "Content-Type: application/json", "--data-binary", try LLMAPITests.json(body),
                "http://127.0.0.1:\(daemon.port)/api/v1/sessions/\(session)/messages",
            ]
            let pipe = Pipe()
            process.standardOutput = pipe
            let reader = pipe.fileHandleForReading
            let (output, continuation) = (output, lines.continuation)
            try process.run()
            Thread {
                forEachChunk(of: reader) { chunk in
                    output.data.withLock { $0.append(chunk) }
                    continuation.yield()
                    return true
                }
                continuation.finish()
            }.start()
            guard body["stream"] as? Bool == true else { return }
            for await _ in lines.stream where text.contains("\"delta\"") { break }
        }

        /// Kills curl as a client that goes away: SIGKILL, since a child of the test runner may inherit an ignored
        /// SIGTERM (the runner's own handling of it), and a curl that ignores it reads the whole reply.
        func kill() { Glibc.kill(process.processIdentifier, SIGKILL) }

        var text: String { String(decoding: output.data.withLock { $0 }, as: UTF8.self) }

        /// Waits for curl to end; what it printed.
        func finish() async throws -> String {
            try await waitForExit(process)
            for await _ in lines.stream {}
            return text
        }
    }

    /// Waits until the session's branch ends with a reply, for at most 30 s.
    static func lastReply(_ daemon: DaemonProcess, _ id: String) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let last = messages(try await call(daemon, "GET", "/api/v1/sessions/\(id)")).last, last["role"] as? String == "assistant" {
                return last
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw CancellationError()
    }

    @Test("append, stream, regenerate, branch, checkout, rollback, stop, a disconnect mid-reply, trimming, and ownership by key")
    func sessions() async throws {
        // A context of 32768 tokens (the tiny model's weights do not care): a reply of 20000 tokens takes seconds, so a
        // client that goes away after the first delta surely does so mid-reply.
        let files = try TinyQwen2.hubFiles().map { file in
            guard file.path == "config.json" else { return file }
            let text = String(decoding: file.data, as: UTF8.self).replacingOccurrences(
                of: "\"max_position_embeddings\": 512", with: "\"max_position_embeddings\": 32768")
            return FakeFile("config.json", Data(text.utf8))
        }
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/qwen2-tiny", commits: [FakeCommit(files: files)])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                #expect(try await daemon.modelctl(["pull", "acme/qwen2-tiny"]).status == 0)
                let started = try await daemon.modelctl(["start", "acme/qwen2-tiny", "--engine", "builtin", "--name", "tiny", "--wait"])
                #expect(started.status == 0, "\(started.stderr)")
                try await Self.conversation(daemon)
                try await Self.cutOff(daemon)
                try await Self.trimming(daemon)
                try await Self.modelctlChat(daemon)
                try await Self.ownership(daemon)
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }

    static func conversation(_ daemon: DaemonProcess) async throws {
        let options: [String: Any] = ["max_tokens": 6, "temperature": 0, "ignore_eos": true]
        let created = try await call(
            daemon, "POST", "/api/v1/sessions", ["model": "tiny", "name": "first", "system": "Be terse.", "options": options])
        #expect(created.status == 200, "\(created.body)")
        let id = try #require(created.data["id"] as? String)
        #expect((created.data["options"] as? [String: Any])?["max_tokens"] as? Int == 6)

        // One envelope: the stored reply, its usage, nothing dropped.
        let first = try await call(daemon, "POST", "/api/v1/sessions/\(id)/messages", ["content": "Hello there", "stream": false])
        #expect(first.status == 200, "\(first.body)")
        let firstReply = try #require(first.data["message"] as? [String: Any])
        #expect(firstReply["role"] as? String == "assistant" && firstReply["partial"] as? Bool == false)
        #expect(LLMAPITests.usage(first.data)["completion_tokens"] == 6, "\(first.body)")
        #expect(first.data["dropped"] as? Int == 0)

        // Streamed: deltas, then done with the stored message, whose text is the deltas'.
        let second = try await call(daemon, "POST", "/api/v1/sessions/\(id)/messages", ["content": "And again", "stream": true])
        #expect(second.status == 200, "\(second.body)")
        let deltas = second.events.compactMap { $0["delta"] as? String }.joined()
        let done = try #require(second.events.last)
        let secondReply = try #require(done["message"] as? [String: Any])
        #expect(done["done"] as? Bool == true && done["error"] == nil, "\(second.body)")
        #expect(!deltas.isEmpty && secondReply["content"] as? String == deltas)

        // Request metrics carry the model; the streamed reply is counted as such.
        let metrics = try await call(daemon, "GET", "/metrics").body.split(separator: "\n")
        let route = #"route="/api/v1/sessions/{id}/messages""#
        #expect(metrics.contains { $0.hasPrefix("modeld_http_requests_total{") && $0.contains(route) && $0.contains(#"model="acme/qwen2-tiny""#) })
        #expect(metrics.contains { $0.hasPrefix("modeld_streaming_requests_total{") && $0.contains(route) && $0.hasSuffix(" 1") }, "\(metrics)")

        // Resumed by name: the branch in order.
        var shown = try await call(daemon, "GET", "/api/v1/sessions/first")
        #expect(messages(shown).map { $0["role"] as? String } == ["user", "assistant", "user", "assistant"])
        #expect(messages(shown).map { $0["content"] as? String }[2] == "And again")

        // Regenerate: a new last reply beside the old one; checkout goes back to the old.
        let oldID = try #require(secondReply["id"] as? Int)
        let again = try await call(daemon, "POST", "/api/v1/sessions/\(id)/regenerate")
        #expect(again.status == 200, "\(again.body)")
        let regenerated = try #require(again.data["message"] as? [String: Any])
        #expect(regenerated["alternatives"] as? [Int] == [oldID], "\(again.body)")
        shown = try await call(daemon, "GET", "/api/v1/sessions/\(id)")
        #expect(messages(shown).count == 4 && messages(shown).last?["id"] as? Int == regenerated["id"] as? Int)
        #expect(try await call(daemon, "POST", "/api/v1/sessions/\(id)/checkout", ["message": oldID]).status == 200)
        shown = try await call(daemon, "GET", "/api/v1/sessions/\(id)")
        #expect(messages(shown).last?["id"] as? Int == oldID)

        // Editing the first user message starts a branch of its own.
        let firstUser = try #require(messages(shown).first?["id"] as? Int)
        let edited = try await call(daemon, "POST", "/api/v1/sessions/\(id)/messages/\(firstUser)/edit", ["content": "Hi"])
        #expect(edited.status == 200, "\(edited.body)")
        shown = try await call(daemon, "GET", "/api/v1/sessions/\(id)")
        #expect(messages(shown).map { $0["content"] as? String }.first == "Hi" && messages(shown).count == 2)
        #expect(messages(shown).first?["alternatives"] as? [Int] == [firstUser])

        // Rollback to the edited message: its reply is deleted; to 0: everything on the branch.
        let hi = try #require(messages(shown).first?["id"] as? Int)
        let rolled = try await call(daemon, "POST", "/api/v1/sessions/\(id)/rollback", ["to": hi])
        #expect(rolled.status == 200 && messages(rolled).count == 1, "\(rolled.body)")
        #expect(try await call(daemon, "POST", "/api/v1/sessions/\(id)/rollback", ["to": 999_999]).status == 404)

        // Bad input: clear errors, nothing lost.
        #expect(try await call(daemon, "POST", "/api/v1/sessions/\(id)/messages", ["content": ""]).status == 400)
        #expect(try await call(daemon, "POST", "/api/v1/sessions", ["model": "tiny", "name": "first"]).status == 409)
        #expect(try await call(daemon, "GET", "/api/v1/sessions/ses_nosuch").status == 404)
        #expect(messages(try await call(daemon, "GET", "/api/v1/sessions/\(id)")).count == 1)

        // Listed newest first, paged; deleted.
        let other = try await call(daemon, "POST", "/api/v1/sessions", ["model": "tiny"])
        let otherID = try #require(other.data["id"] as? String)
        let page = try await call(daemon, "GET", "/api/v1/sessions?limit=1")
        #expect(page.data["total"] as? Int == 2)
        #expect((page.data["sessions"] as? [[String: Any]])?.map { $0["id"] as? String } == [otherID])
        let next = try await call(daemon, "GET", "/api/v1/sessions?limit=1&offset=1")
        #expect((next.data["sessions"] as? [[String: Any]])?.first?["message_count"] as? Int == 1)
        #expect(try await call(daemon, "GET", "/api/v1/sessions?limit=0").status == 400)
        #expect(try await call(daemon, "DELETE", "/api/v1/sessions/\(otherID)").status == 200)
        #expect(try await call(daemon, "GET", "/api/v1/sessions/\(otherID)").status == 404)
    }

    /// A reply cut by the client going away, and one ended by a stop, are stored as partial.
    static func cutOff(_ daemon: DaemonProcess) async throws {
        let long: [String: Any] = ["content": "Tell me a long story", "stream": true, "max_tokens": 20000, "ignore_eos": true, "temperature": 0]

        let gone = try await call(daemon, "POST", "/api/v1/sessions", ["model": "tiny"])
        let goneID = try #require(gone.data["id"] as? String)
        // A real client killed mid-reply: the daemon sees its connection close, stops the engine's request and
        // stores what was generated, marked partial; what the client had received is where it begins.
        let client = try await OpenStream(daemon, session: goneID, body: long)
        client.kill()
        let received = Reply(status: 200, body: try await client.finish()).events.compactMap { $0["delta"] as? String }.joined()
        let cut = try await lastReply(daemon, goneID)
        #expect(cut["partial"] as? Bool == true && cut["finish_reason"] == nil, "\(cut)")
        let kept = cut["content"] as? String ?? ""
        #expect(!received.isEmpty && kept.hasPrefix(received), "received \(received.count) characters, kept \(kept.count)")

        // Not streamed: nothing is written before the reply is stored, so only the connection's close tells the
        // daemon that the client is gone. Killed once the reply has its first token (the metric counts it).
        let quiet = try await call(daemon, "POST", "/api/v1/sessions", ["model": "tiny"])
        let quietID = try #require(quiet.data["id"] as? String)
        let firstTokens = { try await firstTokenCount(daemon) }
        let before = try await firstTokens()
        let waiting = try await OpenStream(daemon, session: quietID, body: long.merging(["stream": false]) { $1 })
        let deadline = ContinuousClock.now + .seconds(30)
        while try await firstTokens() == before, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        waiting.kill()
        #expect(try await waiting.finish().isEmpty, "curl was killed before the reply")
        let quietCut = try await lastReply(daemon, quietID)
        #expect(quietCut["partial"] as? Bool == true && quietCut["finish_reason"] == nil, "\(quietCut)")

        let stopped = try await call(daemon, "POST", "/api/v1/sessions", ["model": "tiny"])
        let stoppedID = try #require(stopped.data["id"] as? String)
        let stream = try await OpenStream(daemon, session: stoppedID, body: long)
        let stop = try await call(daemon, "POST", "/api/v1/sessions/\(stoppedID)/stop")
        #expect(stop.status == 200, "\(stop.body)")
        let text = try await stream.finish()
        let done = try #require(Reply(status: 200, body: text).events.last)
        #expect(done["error"] as? String == "stopped", "\(text)")
        #expect((done["message"] as? [String: Any])?["partial"] as? Bool == true)
        #expect(try await lastReply(daemon, stoppedID)["partial"] as? Bool == true)
        #expect(try await call(daemon, "POST", "/api/v1/sessions/\(stoppedID)/stop").status == 409, "nothing is being generated now")
    }

    /// How many replies have had their first token (`modeld_time_to_first_token_seconds_count`, all models).
    static func firstTokenCount(_ daemon: DaemonProcess) async throws -> Int {
        try await call(daemon, "GET", "/metrics").body.split(separator: "\n")
            .filter { $0.hasPrefix("modeld_time_to_first_token_seconds_count") }
            .reduce(0) { $0 + (Int($1.split(separator: " ").last ?? "") ?? 0) }
    }

    /// At a small context the oldest turns are left out, never the system prompt, and the reply says how many.
    static func trimming(_ daemon: DaemonProcess) async throws {
        let system = "You answer in one word."
        let created = try await call(
            daemon, "POST", "/api/v1/sessions",
            ["model": "tiny", "system": system, "options": ["max_context": 160, "max_tokens": 8, "ignore_eos": true, "temperature": 0]])
        let id = try #require(created.data["id"] as? String)
        var dropped = 0
        for turn in 0..<6 where dropped == 0 {
            let reply = try await call(
                daemon, "POST", "/api/v1/sessions/\(id)/messages", ["content": "Turn \(turn): the quick brown fox jumps over the lazy dog"])
            #expect(reply.status == 200, "\(reply.body)")
            dropped = reply.data["dropped"] as? Int ?? 0
            let prompt = LLMAPITests.usage(reply.data)["prompt_tokens"] ?? .max
            #expect(prompt <= 160 - 8, "\(reply.body)")
            guard dropped > 0 else { continue }
            // What went to the engine: the system prompt, then the branch without its `dropped` oldest messages.
            let branch = messages(try await call(daemon, "GET", "/api/v1/sessions/\(id)")).dropLast()
            #expect(dropped % 2 == 0, "whole turns are dropped")
            let sent = [["role": "system", "content": system]] + branch.dropFirst(dropped).map { ["role": $0["role"]!, "content": $0["content"]!] }
            let counted = try await call(daemon, "POST", "/api/v1/llm/count-tokens", ["model": "tiny", "messages": sent])
            #expect(counted.data["tokens"] as? Int == prompt, "\(counted.body)")
        }
        #expect(dropped > 0, "six turns outgrow a context of 160 tokens")
        let huge = try await call(daemon, "POST", "/api/v1/sessions/\(id)/messages", ["content": String(repeating: "word ", count: 400)])
        #expect(huge.status == 400 && huge.message.contains("context"), "\(huge.body)")
    }

    /// `modelctl chat --session NAME`: made on REF when missing, resumed without REF, each turn stored.
    static func modelctlChat(_ daemon: DaemonProcess) async throws {
        let missing = try await daemon.modelctl(["chat", "--session", "notes"], input: "Hello\n")
        #expect(missing.status == 1 && missing.stderr.contains("no session notes"), "\(missing.stderr)")
        let made = try await daemon.modelctl(
            ["chat", "tiny", "--session", "notes", "--max-tokens", "4", "--temperature", "0", "--json"], input: "Hello\n")
        #expect(made.status == 0, "\(made.stderr)")
        let first = try #require(try JSONSerialization.jsonObject(with: Data(made.stdout.utf8)) as? [String: Any], "\(made.stdout)")
        let resumed = try await daemon.modelctl(["chat", "--session", "notes", "--json"], input: "Again\n")
        #expect(resumed.status == 0, "\(resumed.stderr)")
        let shown = messages(try await call(daemon, "GET", "/api/v1/sessions/notes"))
        #expect(shown.map { $0["content"] as? String }.count == 4, "\(shown)")
        #expect(shown[0]["content"] as? String == "Hello" && shown[1]["content"] as? String == first["content"] as? String)
        #expect(shown[2]["content"] as? String == "Again" && shown[3]["role"] as? String == "assistant", "\(shown)")
        let other = try await daemon.modelctl(["chat", "acme/qwen2-tiny", "--session", "notes"], input: "x\n")
        #expect(other.status == 1 && other.stderr.contains("leave REF out"), "\(other.stderr)")
    }

    /// A session belongs to the key that made it; an admin key sees all; without a key nothing.
    static func ownership(_ daemon: DaemonProcess) async throws {
        func key(_ name: String, admin: Bool = false) async throws -> String {
            let made = try await daemon.modelctl(["keys", "create", "--name", name] + (admin ? ["--scope", "admin"] : []))
            return String(made.stdout.split(separator: "\n").last ?? "")
        }
        let (alice, bob, boss) = (try await key("alice"), try await key("bob"), try await key("boss", admin: true))
        let mine = try await call(daemon, "POST", "/api/v1/sessions", ["model": "tiny"], key: alice)
        #expect(mine.status == 200, "inference keys may use sessions: \(mine.body)")
        let id = try #require(mine.data["id"] as? String)
        #expect(try await call(daemon, "GET", "/api/v1/sessions/\(id)", key: alice).status == 200)
        #expect(try await call(daemon, "GET", "/api/v1/sessions/\(id)", key: bob).status == 404)
        #expect(try await call(daemon, "POST", "/api/v1/sessions/\(id)/messages", ["content": "hi"], key: bob).status == 404)
        #expect(try await call(daemon, "DELETE", "/api/v1/sessions/\(id)", key: bob).status == 404)
        #expect(try await call(daemon, "GET", "/api/v1/sessions", key: bob).data["total"] as? Int == 0)
        #expect(try await call(daemon, "GET", "/api/v1/sessions", key: alice).data["total"] as? Int == 1)
        let all = try await call(daemon, "GET", "/api/v1/sessions", key: boss).data["total"] as? Int ?? 0
        #expect(all > 1, "the admin key sees every session")
        #expect(try await call(daemon, "GET", "/api/v1/sessions/\(id)", key: boss).status == 200)
        #expect(try await call(daemon, "GET", "/api/v1/sessions").status == 401)
    }
}
