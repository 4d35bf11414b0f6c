import Foundation
import ModeldAPI
import ModeldClient
import Testing

@testable import Daemon

/// The OpenAI gateway routing between runs of one model, against a real daemon and fake vLLM engines.
@Suite("Gateway routing")
struct GatewayTests {
    @Test(
        "requests for a model with two runs are shared by outstanding requests; streams relay as they come; a client that leaves cancels the engine's request"
    )
    func leastBusy() async throws {
        // No engine replies before all four requests below have reached one (both engines append to the same
        // request log), so the four are in flight at once however slow the machine; then each reply takes 2 s.
        try await withFakeVLLMDaemon(environment: ["FAKE_ENGINE_REPLY_DELAY": "2", "FAKE_ENGINE_HOLD_UNTIL_LOGGED": "4"]) {
            daemon, requestLog in
            for name in ["first", "second"] {
                let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", name, "--wait"])
                #expect(started.status == 0, "\(started.stderr)")
            }
            let body = #"{"model": "acme/tiny", "messages": [{"role": "user", "content": "Hi"}]}"#
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<4 {
                    group.addTask { try await LLMAPITests.post(daemon, "/v1/chat/completions", body).status }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == [200, 200, 200, 200], "\(daemon.log)")
            let models = try String(contentsOfFile: requestLog, encoding: .utf8).split(separator: "\n").compactMap {
                JSONMembers(Array($0.utf8))?.string("model")
            }
            #expect(models.sorted() == ["first", "first", "second", "second"], "\(models)")

            // A streamed reply is relayed as it comes; a client that goes away cancels the engine's request
            // (the fake engine's 30 chunks would take 3 s; it notices the close at its next write).
            let streamBody = #"{"model": "first", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#
            let streamed = try await runProcess(
                URL(filePath: "/usr/bin/curl"),
                [
                    "-s", "-N", "--max-time", "1", "-H", "Content-Type: application/json", "--data-binary", streamBody,
                    "http://127.0.0.1:\(daemon.port)/v1/chat/completions",
                ])
            #expect(streamed.status == 28, "curl was not cut off by --max-time: \(streamed.stdout)")
            let ticks = streamed.stdout.components(separatedBy: "tick").count - 1
            #expect(ticks >= 3 && ticks < 30, "\(ticks) chunks arrived within 1 s: \(streamed.stdout)")
            var cancelled = false
            for _ in 0..<40 where !cancelled {
                try await Task.sleep(for: .milliseconds(100))
                cancelled = try String(contentsOfFile: requestLog, encoding: .utf8).contains("stream cancelled by the client")
            }
            #expect(cancelled, "the engine kept streaming after the client left; modeld log:\n\(daemon.log)")

            // A client that stops waiting for a reply that is not streamed (this engine takes 2 s) cancels it too:
            // the daemon gives up on the engine's reply when the client goes, not when the reply comes.
            let impatient = try await runProcess(
                URL(filePath: "/usr/bin/curl"),
                [
                    "-s", "--max-time", "0.5", "-H", "Content-Type: application/json", "--data-binary", body,
                    "http://127.0.0.1:\(daemon.port)/v1/chat/completions",
                ])
            #expect(impatient.status == 28)
            _ = try await daemon.logEventually { $0.components(separatedBy: "status=499 via=fast-path").count - 1 == 2 }
            let gaveUp = daemon.log.split(separator: "\n").filter { $0.contains("status=499 via=fast-path") }.compactMap { line in
                line.firstMatch(of: /duration_ms=([0-9.]+)/).flatMap { Double($0.1) }
            }
            #expect(gaveUp.count == 2 && gaveUp.last.map { $0 < 1500 } == true, "\(gaveUp)\n\(daemon.log)")
        }
    }

    @Test(
        "Ollama's chat for a ready run, below the router: the engine's chunks become lines as they come, or one reply; a client that leaves cancels the engine's request"
    )
    func ollamaFastPath() async throws {
        try await withFakeVLLMDaemon { daemon, requestLog in
            let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "first", "--wait"])
            #expect(started.status == 0, "\(started.stderr)")
            // The fake engine streams 30 chunks 100 ms apart; the client gives up after 1 s.
            let body = #"{"model": "acme/tiny", "messages": [{"role": "user", "content": "Hi"}]}"#
            let streamed = try await runProcess(
                URL(filePath: "/usr/bin/curl"),
                [
                    "-s", "-N", "--max-time", "1", "-H", "Content-Type: application/json", "--data-binary", body,
                    "http://127.0.0.1:\(daemon.port)/api/chat",
                ])
            #expect(streamed.status == 28, "curl was not cut off by --max-time: \(streamed.stdout)")
            let lines = streamed.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let ticks = lines.filter { ($0?["message"] as? [String: Any])?["content"] as? String == "tick " && $0?["done"] as? Bool == false }
            #expect(ticks.count >= 3 && ticks.count < 30 && ticks.count == lines.count, "\(streamed.stdout)")
            var cancelled = false
            for _ in 0..<40 where !cancelled {
                try await Task.sleep(for: .milliseconds(100))
                cancelled = try String(contentsOfFile: requestLog, encoding: .utf8).contains("stream cancelled by the client")
            }
            #expect(cancelled, "the engine kept streaming after the client left; modeld log:\n\(daemon.log)")
            #expect(try await daemon.logEventually { $0.contains("route=/api/chat status=499 via=fast-path") }, "\(daemon.log)")

            // Whole: the text gathered, the last line's fields, as the router's handler answers.
            let whole = try await LLMAPITests.post(daemon, "/api/generate", #"{"model": "acme/tiny", "prompt": "Hi", "stream": false}"#)
            let reply = try #require(try JSONSerialization.jsonObject(with: Data(whole.body.utf8)) as? [String: Any], "\(whole.body)")
            #expect(whole.status == 200 && reply["response"] as? String == String(repeating: "tick ", count: 30), "\(whole.body)")
            #expect(reply["done"] as? Bool == true && reply["done_reason"] as? String == "stop" && reply["model"] as? String == "acme/tiny")
            #expect((reply["eval_duration"] as? Int ?? 0) > 0 && (reply["total_duration"] as? Int ?? 0) > (reply["eval_duration"] as? Int ?? 0))
            #expect(try await daemon.logEventually { $0.contains("route=/api/generate status=200 via=fast-path") }, "\(daemon.log)")
        }
    }

    @Test(
        "the relay below the router: pipelined requests answered in order, relayed or routed; its requests logged with their ids; API keys and rate limits shared with the router"
    )
    func relay() async throws {
        try await withFakeVLLMDaemon { daemon, requestLog in
            let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "first", "--wait"])
            #expect(started.status == 0, "\(started.stderr)")
            let chat = #"{"model": "first", "messages": [{"role": "user", "content": "Hi"}]}"#
            let stream = #"{"model": "first", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}"#
            let unknown = #"{"model": "nope/nothing", "messages": [{"role": "user", "content": "Hi"}]}"#
            let byRepo = #"{"model": "ACME/TINY", "messages": [{"role": "user", "content": "Hi"}]}"#
            // Five requests in one write. The relay takes the first two in turn (the second, streamed for 3 s, waits
            // for the first); then /health and an unknown model go to the router, and the last request, which the
            // relay could take, goes there too, since the router owes answers before it.
            let replies = try await RawHTTP.exchange(
                port: daemon.port,
                [
                    RawHTTP.post("/v1/chat/completions", chat), RawHTTP.post("/v1/chat/completions", stream),
                    "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", RawHTTP.post("/v1/chat/completions", unknown),
                    RawHTTP.post("/v1/chat/completions?x=1", byRepo),
                ],
                expecting: 5)
            #expect(replies.map(\.status) == [200, 200, 200, 404, 200], "\(replies)\n\(daemon.log)")
            guard replies.count == 5 else { return }
            #expect(replies[0].body.contains("A fake reply.") && replies[0].headers["content-length"] != nil, "\(replies[0])")
            #expect(replies[1].headers["content-type"] == "text/event-stream" && replies[1].headers["transfer-encoding"] == "chunked")
            #expect(
                replies[1].body.components(separatedBy: "tick").count - 1 == 30 && replies[1].body.hasSuffix("data: [DONE]\n\n"), "\(replies[1].body)"
            )
            #expect(replies[2].body.contains("\"ok\""), "\(replies[2])")
            #expect(replies[3].body.contains("not pulled"), "\(replies[3])")
            #expect(replies[4].body.contains("A fake reply."), "\(replies[4])")
            // The engine got the served name in place of the repo id.
            let models = try String(contentsOfFile: requestLog, encoding: .utf8).split(separator: "\n").compactMap {
                JSONMembers(Array($0.utf8))?.string("model")
            }
            #expect(models == ["first", "first", "first"], "\(models)")
            #expect(try !String(contentsOfFile: requestLog, encoding: .utf8).contains("stream cancelled by the client"))

            // Each reply carries its request id, and the daemon's log line for it says which lane answered.
            let ids = replies.map { $0.headers["x-request-id"] ?? "" }
            #expect(Set(ids).count == 5 && !ids.contains(""), "\(ids)")
            // A request is logged once its reply is done, which the client may see a moment before the line is
            // written (and read from the daemon's stderr): wait for the line.
            func line(_ id: String) async throws -> Substring? {
                for _ in 0..<400 {
                    if let found = daemon.log.split(separator: "\n").first(where: { $0.contains("hb.request.id=\(id)") && $0.contains("] request") })
                    {
                        return found
                    }
                    try await Task.sleep(for: .milliseconds(25))
                }
                return nil
            }
            for index in [0, 1] {
                let logged = try await line(ids[index])
                #expect(logged?.contains("status=200 via=fast-path") == true, "request \(index): \(String(describing: logged))")
            }
            let notFound = try await line(ids[3]), routed = try await line(ids[4])
            #expect(notFound.map { $0.contains("status=404") && !$0.contains("via=fast-path") } == true, "\(String(describing: notFound))")
            #expect(routed.map { $0.contains("status=200") && !$0.contains("via=fast-path") } == true, "\(String(describing: routed))")

            // A pipelined request whose body comes later, while the reply before it streams: it waits, then is read
            // and relayed.
            let waiting = RawHTTP.post("/v1/chat/completions", chat)
            let split = waiting.range(of: "\r\n\r\n")!.upperBound
            let late = try await RawHTTP.exchange(
                port: daemon.port, [RawHTTP.post("/v1/chat/completions", stream), String(waiting[..<split])],
                later: String(waiting[split...]), delay: 0.5, expecting: 2)
            #expect(late.map(\.status) == [200, 200] && late.last?.body.contains("A fake reply.") == true, "\(late)")
            for reply in late {
                #expect(try await line(reply.headers["x-request-id"] ?? "-")?.contains("via=fast-path") == true, "\(reply)")
            }
            // A request cut short by a half-close goes to the router as far as it came, which ends the connection.
            let cutAt = ContinuousClock.now
            let cut = try await RawHTTP.exchange(port: daemon.port, [String(waiting.dropLast(10))], halfClose: true, expecting: 1)
            #expect(cut.allSatisfy { $0.status >= 400 } && ContinuousClock.now - cutAt < .seconds(10), "\(cut)")
            // A client that closes its side while its reply streams has gone away, as proxies read it: the engine's
            // request is cancelled (the fake engine notices at its next write) and the request logged as 499.
            let halfClosed = try await RawHTTP.exchange(
                port: daemon.port, [RawHTTP.post("/v1/chat/completions", stream)], later: "", delay: 0.5, halfClose: true, expecting: 1)
            #expect(halfClosed.isEmpty, "\(halfClosed)")
            var noticed = false
            for _ in 0..<40 where !noticed {
                try await Task.sleep(for: .milliseconds(100))
                noticed = try String(contentsOfFile: requestLog, encoding: .utf8).contains("stream cancelled by the client")
            }
            let loggedGone = try await daemon.logEventually { $0.contains("status=499 via=fast-path") }
            #expect(noticed && loggedGone, "\(daemon.log)")

            // Once a key exists the relay asks for it too, and takes from the router's rate buckets: a key limited to
            // two requests a minute has two relayed requests, then the router's 429.
            let created = try await daemon.modelctl(["keys", "create", "--name", "slow", "--rate", "2"])
            let key = String(created.stdout.split(separator: "\n").last ?? "")
            #expect(try await LLMAPITests.post(daemon, "/v1/chat/completions", chat).status == 401)
            #expect(try await LLMAPITests.post(daemon, "/v1/chat/completions", chat, key: "mdk_wrong").status == 401)
            #expect(try await LLMAPITests.post(daemon, "/v1/chat/completions", chat, key: key).status == 200)
            #expect(try await LLMAPITests.post(daemon, "/v1/chat/completions", chat, key: key).status == 200)
            let limited = try await LLMAPITests.post(daemon, "/v1/chat/completions", chat, key: key)
            #expect(limited.status == 429 && limited.body.contains("2 requests per minute"), "\(limited.body)")
            #expect(try await daemon.logEventually { $0.components(separatedBy: "via=fast-path").count - 1 == 7 }, "\(daemon.log)")

            // A shutdown while a reply streams lets it finish (the daemon drains its connections).
            let admin = try await daemon.modelctl(["keys", "create", "--name", "drain"])
            let adminKey = String(admin.stdout.split(separator: "\n").last ?? "")
            async let draining = RawHTTP.exchange(
                port: daemon.port, [RawHTTP.post("/v1/chat/completions", stream, key: adminKey)], expecting: 1)
            try await Task.sleep(for: .milliseconds(500))
            kill(daemon.process.processIdentifier, SIGTERM)
            let drained = try await draining
            #expect(drained.first?.status == 200 && drained.first?.body.hasSuffix("data: [DONE]\n\n") == true, "\(drained)\n\(daemon.log)")
        }
    }
}

/// HTTP/1.1 by hand over one TCP connection: requests written at once (pipelined), replies read in order.
enum RawHTTP {
    struct Reply: CustomStringConvertible {
        var status: Int
        /// Lower-case names.
        var headers: [String: String]
        var body: String
        var description: String { "\(status) \(headers) \(body)" }
    }

    static func post(_ path: String, _ body: String, key: String? = nil) -> String {
        "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + (key.map { "Authorization: Bearer \($0)\r\n" } ?? "") + "\r\n\(body)"
    }

    /// Writes every request in one go, then reads until `count` replies are complete (or 30 s pass).
    /// - Parameters:
    ///   - later: written `delay` seconds after `requests`.
    ///   - halfClose: shut the connection's sending side once everything is written.
    static func exchange(
        port: Int, _ requests: [String], later: String? = nil, delay: Double = 0, halfClose: Bool = false, expecting count: Int
    ) async throws -> [Reply] {
        try await blocking {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw POSIXError(.EIO) }
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
            for (index, text) in ([requests.joined()] + (later.map { [$0] } ?? [])).enumerated() {
                if index > 0 { Thread.sleep(forTimeInterval: delay) }
                let bytes = Array(text.utf8)
                guard bytes.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == bytes.count else { throw POSIXError(.EIO) }
            }
            if halfClose { shutdown(fd, Int32(SHUT_WR)) }
            var received: [UInt8] = []
            var replies: [Reply] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while replies.count < count {
                if let (reply, used) = parse(received[...]) {
                    replies.append(reply)
                    received.removeFirst(used)
                    continue
                }
                let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if got <= 0 { break }
                received += buffer[0..<got]
            }
            return replies
        }
    }

    /// One complete reply at the front of `bytes` (a length or chunked body), and how many bytes it took.
    private static func parse(_ bytes: ArraySlice<UInt8>) -> (Reply, Int)? {
        let text = Array(bytes)
        guard let headEnd = find([13, 10, 13, 10], in: text, from: 0) else { return nil }
        let lines = String(decoding: text[0..<headEnd], as: UTF8.self).components(separatedBy: "\r\n")
        guard let status = lines.first?.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var at = headEnd + 4
        var body: [UInt8] = []
        if let length = headers["content-length"].flatMap({ Int($0) }) {
            guard text.count >= at + length else { return nil }
            body = Array(text[at..<(at + length)])
            at += length
        } else if headers["transfer-encoding"] == "chunked" {
            while true {
                guard let lineEnd = find([13, 10], in: text, from: at),
                    let size = Int(String(decoding: text[at..<lineEnd], as: UTF8.self), radix: 16)
                else { return nil }
                at = lineEnd + 2
                guard text.count >= at + size + 2 else { return nil }
                body += text[at..<(at + size)]
                at += size + 2
                if size == 0 { break }
            }
        }
        return (Reply(status: status, headers: headers, body: String(decoding: body, as: UTF8.self)), at)
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var index = start
        while index + needle.count <= haystack.count {
            if haystack[index..<(index + needle.count)].elementsEqual(needle) { return index }
            index += 1
        }
        return nil
    }
}

extension DaemonProcess {
    /// Whether the daemon's log comes to satisfy `condition` within a few seconds: a request is logged once its
    /// reply is done, which its client may see a moment before the line is written and read back.
    func logEventually(_ condition: (String) -> Bool) async throws -> Bool {
        for _ in 0..<200 {
            if condition(log) { return true }
            try await Task.sleep(for: .milliseconds(25))
        }
        return condition(log)
    }
}
