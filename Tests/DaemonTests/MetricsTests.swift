import FakeHub
import Foundation
import Hummingbird
import HummingbirdTesting
import ModelStore
import ModeldAPI
import ModeldClient
import NIOCore
import Testing

@testable import Daemon

/// One sample of a scrape, as the real `prometheus_client` parser read it.
struct MetricSample: Decodable {
    let name: String
    let labels: [String: String]
    let value: Double
}

extension [MetricSample] {
    /// The value of the one sample with this name and these labels (nil when absent).
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        first { $0.name == name && $0.labels == labels }?.value
    }
}

/// Parses Prometheus text with `prometheus_client.parser` (installed by `make test`); throws when it cannot.
func parsePrometheus(_ text: String) async throws -> [MetricSample] {
    let script = """
        import sys, json
        from prometheus_client.parser import text_string_to_metric_families
        samples = [{"name": s.name, "labels": s.labels, "value": s.value}
                   for family in text_string_to_metric_families(sys.stdin.read()) for s in family.samples]
        print(json.dumps(samples))
        """
    let result = try await runProcess(URL(filePath: "/usr/bin/env"), ["python3", "-c", script], input: text)
    guard result.status == 0 else {
        throw ParseFailure(message: "prometheus_client could not parse the scrape: \(result.stderr)\n\(text)")
    }
    return try JSONDecoder().decode([MetricSample].self, from: Data(result.stdout.utf8))
}

struct ParseFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

@Suite("Metrics and request logs")
struct MetricsTests {
    /// `curl` a path of the daemon: status, headers (lower-cased names) and body.
    static func curl(_ daemon: DaemonProcess, _ path: String, key: String? = nil) async throws -> (
        status: Int, headers: [String: String], body: String
    ) {
        let headersFile = daemon.root.appending(path: "headers-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: headersFile) }
        var arguments = ["-s", "-D", headersFile.path, "http://127.0.0.1:\(daemon.port)\(path)"]
        if let key { arguments += ["-H", "Authorization: Bearer \(key)"] }
        let result = try await runProcess(URL(filePath: "/usr/bin/curl"), arguments)
        let lines = try String(contentsOf: headersFile, encoding: .utf8).split(separator: "\r\n")
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers, result.stdout)
    }

    @Test(
        "a real daemon's /metrics, parsed by prometheus_client: requests, durations, tokens, time to first token, runs, restarts, pulled bytes; one log line per request",
        .timeLimit(.minutes(3)))
    func endToEnd() async throws {
        let files = try TinyQwen2.hubFiles()
        let fixtureBytes = files.reduce(0) { $0 + $1.data.count }
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/qwen2-tiny", commits: [FakeCommit(files: files)])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                let pulled = try await daemon.modelctl(["pull", "acme/qwen2-tiny"])
                #expect(pulled.status == 0, "\(pulled.stderr)")
                let started = try await daemon.modelctl(["start", "acme/qwen2-tiny", "--engine", "builtin", "--name", "tiny", "--wait", "--json"])
                #expect(started.status == 0, "\(started.stderr)\nmodeld log:\n\(daemon.log)")
                let run = try WireJSON.decoder().decode(RunSummary.self, from: Data(started.stdout.utf8))

                // Gateway traffic with the real openai client: plain, streamed with usage, streamed without.
                let script = """
                    import sys, json, openai
                    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
                    ask = dict(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0,
                               extra_body={"ignore_eos": True})
                    plain = client.chat.completions.create(**ask)
                    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **ask))
                    usage = [c.usage for c in chunks if c.usage][-1]
                    texts = [c for c in client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0, stream=True,
                                                                   extra_body={"ignore_eos": True}) if c.choices and c.choices[0].text]
                    # The LLM API's replies count too: chat plainly, generate streamed (NDJSON, usage on the done line).
                    import urllib.request
                    def post(path, body):
                        request = urllib.request.Request(sys.argv[1] + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
                        return urllib.request.urlopen(request).read()
                    chatted = json.loads(post("/api/v1/llm/chat", {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
                                                                   "temperature": 0, "ignore_eos": True}))["data"]["usage"]
                    events = [json.loads(line) for line in post("/api/v1/llm/generate", {"model": "tiny", "prompt": "Hello", "max_tokens": 4,
                              "temperature": 0, "ignore_eos": True, "stream": True}).splitlines() if line.strip()]
                    generated = events[-1]["usage"]
                    print(json.dumps({"prompt": plain.usage.prompt_tokens + usage.prompt_tokens + chatted["prompt_tokens"] + generated["prompt_tokens"],
                                      "completion": plain.usage.completion_tokens + usage.completion_tokens + len(texts)
                                                    + chatted["completion_tokens"] + generated["completion_tokens"],
                                      "content_chunks": len(texts), "llm_deltas": sum(1 for event in events if event.get("delta"))}))
                    """
                let traffic = try await runProcess(URL(filePath: "/usr/bin/env"), ["python3", "-c", script, "http://127.0.0.1:\(daemon.port)"])
                #expect(traffic.status == 0, "\(traffic.stdout)\(traffic.stderr)")
                let sent = try #require(try JSONSerialization.jsonObject(with: Data(traffic.stdout.utf8)) as? [String: Int])
                #expect(sent["content_chunks", default: 0] > 0, "the streamed completion had no content: \(traffic.stdout)")
                #expect(sent["llm_deltas", default: 0] > 0, "the LLM API's streamed generation had no content: \(traffic.stdout)")

                // Three requests only this test makes, one unknown path, and the request id of one of them.
                var requestID = ""
                for _ in 0..<3 {
                    let reply = try await Self.curl(daemon, "/openapi.json")
                    #expect(reply.status == 200)
                    requestID = reply.headers["x-request-id"] ?? ""
                }
                #expect(try await Self.curl(daemon, "/no/such/path").status == 404)

                // The engine crashes; the supervisor restarts it.
                let pid = try #require(run.pid)
                kill(pid, SIGKILL)
                // The counter must equal the supervisor's own count of restarts (at least this one; a probe that
                // times out on a loaded machine may add another before the scrape).
                var restarted = false
                var restarts = 0
                for _ in 0..<300 where !restarted {
                    let listed = try await daemon.modelctl(["ps", "--json"])
                    let runs = (try? WireJSON.decoder().decode([RunSummary].self, from: Data(listed.stdout.utf8))) ?? []
                    let tiny = runs.first { $0.name == "tiny" && $0.state == "ready" && $0.restarts >= 1 && $0.pid != pid }
                    restarted = tiny != nil
                    if !restarted { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(restarted, "the engine was not restarted; modeld log:\n\(daemon.log)")

                let scrape = try await Self.curl(daemon, "/metrics")
                let listed = try await daemon.modelctl(["ps", "--json"])
                restarts =
                    ((try? WireJSON.decoder().decode([RunSummary].self, from: Data(listed.stdout.utf8))) ?? [])
                    .first { $0.name == "tiny" }?.restarts ?? -1
                #expect(scrape.status == 200)
                #expect(scrape.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
                let samples = try await parsePrometheus(scrape.body)
                let requests = "modeld_http_requests_total"
                #expect(samples.value(requests, ["route": "/v1/chat/completions", "code": "200", "model": "acme/qwen2-tiny"]) == 2, "\(scrape.body)")
                #expect(samples.value(requests, ["route": "/v1/completions", "code": "200", "model": "acme/qwen2-tiny"]) == 1)
                #expect(samples.value(requests, ["route": "/openapi.json", "code": "200", "model": ""]) == 3)
                #expect(samples.value(requests, ["route": "NotFound", "code": "404", "model": ""]) == 1)
                #expect(!samples.contains { $0.labels["route"] == "/no/such/path" }, "raw paths never become labels")
                let durations = "modeld_http_request_duration_seconds"
                #expect(samples.value("\(durations)_count", ["route": "/v1/chat/completions"]) == 2)
                #expect((samples.value("\(durations)_sum", ["route": "/v1/chat/completions"]) ?? 0) > 0)
                #expect(samples.value("\(durations)_bucket", ["route": "/openapi.json", "le": "+Inf"]) == 3)

                let model = "acme/qwen2-tiny"
                #expect(
                    samples.value("modeld_tokens_total", ["model": model, "kind": "prompt"]) == Double(sent["prompt", default: -1]),
                    "\(traffic.stdout)")
                #expect(
                    samples.value("modeld_tokens_total", ["model": model, "kind": "completion"]) == Double(sent["completion", default: -1]),
                    "\(traffic.stdout)")
                // Three streamed replies (two through the gateway, one through the LLM API); the first content came
                // before the reply ended.
                #expect(samples.value("modeld_time_to_first_token_seconds_count", ["model": model]) == 3)
                let firstTokens = try #require(samples.value("modeld_time_to_first_token_seconds_sum", ["model": model]))
                #expect(firstTokens > 0)

                #expect(samples.value("modeld_runs", ["state": "ready"]) == 1)
                #expect(samples.value("modeld_runs", ["state": "failed"]) == 0)
                #expect(restarts >= 1)
                #expect(samples.value("modeld_engine_restarts_total", ["engine": "builtin"]) == Double(restarts))
                #expect(samples.value("modeld_engine_restarts_total", ["engine": "vllm"]) == 0)
                #expect(samples.value("modeld_pulled_bytes_total", ["source": "huggingface"]) == Double(fixtureBytes))
                #expect(samples.value("modeld_pulled_bytes_total", ["source": "modelscope"]) == 0)

                // One log line for that request, with its id, method, route, status and duration.
                var line: Substring?
                for _ in 0..<40 where line == nil {
                    line = daemon.log.split(separator: "\n").first { $0.contains(requestID) && $0.contains("route=/openapi.json") }
                    if line == nil { try await Task.sleep(for: .milliseconds(50)) }
                }
                let logged = try #require(line, "no log line for request \(requestID):\n\(daemon.log)")
                #expect(!requestID.isEmpty)
                #expect(logged.contains("method=GET") && logged.contains("status=200") && logged.contains("duration_ms="), "\(logged)")
                #expect(daemon.log.split(separator: "\n").filter { $0.contains(requestID) }.count == 1, "one line per request")

                // Once a key exists, /metrics needs one, of either scope; the key never reaches the log.
                let created = try await daemon.modelctl(["keys", "create", "--name", "scraper"])
                let key = String(created.stdout.split(separator: "\n").last ?? "")
                #expect(try await Self.curl(daemon, "/metrics").status == 401)
                #expect(try await Self.curl(daemon, "/metrics", key: key).status == 200)
                #expect(try await Self.curl(daemon, "/health").status == 200)
                let denied = try await parsePrometheus(try await Self.curl(daemon, "/metrics", key: key).body)
                #expect(denied.value(requests, ["route": "/metrics", "code": "401", "model": ""]) == 1)
                #expect(!key.isEmpty && !daemon.log.contains(key), "an API key reached the log")
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }

    @Test("token counting reads SSE events split anywhere, prefers the engine's usage, and reads JSON replies")
    func replyMeter() async throws {
        let metrics = DaemonMetrics()
        let daemon = try await TestDaemon()
        let started = ContinuousClock.now
        func feed(_ text: String, model: String, pieces: Int) {
            let ticket = UsageTicket(
                ledger: daemon.context.usage, keyID: nil, model: model, backend: "local:\(model)", route: "/v1/completions", started: started)
            let meter = ReplyMeter(model: model, started: started, metrics: metrics, ticket: ticket)
            let bytes = Array(text.utf8)
            let size = max(1, bytes.count / pieces)
            for start in stride(from: 0, to: bytes.count, by: size) {
                meter.observe(ByteBuffer(bytes: bytes[start..<min(bytes.count, start + size)]))
            }
            meter.finish(status: 200)
            meter.finish(status: 499)
        }
        // No usage: each chunk with content counts as one token; the role-only chunk and [DONE] do not.
        let noUsage = """
            data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\r
            \r
            data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}

            : a comment
            data: {"choices":[{"index":0,"delta":{"content":"lo"}}]}

            data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

            data: [DONE]


            """
        feed(noUsage, model: "a", pieces: 37)
        // With usage (null in every chunk but the last, as OpenAI sends it): the usage wins.
        let withUsage = """
            data: {"choices":[{"index":0,"text":"x"}],"usage":null}

            data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":9,"total_tokens":16}}

            data: [DONE]

            """
        feed(withUsage, model: "b", pieces: 5)
        // Replies that were not streamed: their usage, read whole.
        metrics.recordUsage(
            ofReply: Data(#"{"id":"c","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#.utf8), model: "c")
        metrics.recordUsage(ofReply: Data(#"{"data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":6,"total_tokens":6}}"#.utf8), model: "d")

        let samples = try await parsePrometheus(String(decoding: metrics.exposition(), as: UTF8.self))
        #expect(samples.value("modeld_tokens_total", ["model": "a", "kind": "completion"]) == 2)
        #expect(samples.value("modeld_tokens_total", ["model": "a", "kind": "prompt"]) == nil)
        #expect(samples.value("modeld_tokens_total", ["model": "b", "kind": "prompt"]) == 7)
        #expect(samples.value("modeld_tokens_total", ["model": "b", "kind": "completion"]) == 9)
        #expect(samples.value("modeld_tokens_total", ["model": "c", "kind": "prompt"]) == 3)
        #expect(samples.value("modeld_tokens_total", ["model": "c", "kind": "completion"]) == 4)
        #expect(samples.value("modeld_tokens_total", ["model": "d", "kind": "prompt"]) == 6)
        #expect(samples.value("modeld_time_to_first_token_seconds_count", ["model": "a"]) == 1)
        #expect(samples.value("modeld_time_to_first_token_seconds_count", ["model": "b"]) == 1)
        #expect(samples.value("modeld_time_to_first_token_seconds_count", ["model": "c"]) == nil, "JSON replies have no first token")

        // The same counts went to the usage ledger, once per reply however often it was finished.
        await daemon.context.usage.flushed()
        let sums = try await daemon.context.store.usageSums(from: .distantPast, to: .distantFuture, groupedBy: .model)
        #expect(sums.map(\.group) == ["a", "b"])
        #expect(sums.map(\.requests) == [1, 1] && sums.map(\.errors) == [0, 0])
        #expect(sums.map(\.promptTokens) == [0, 7] && sums.map(\.completionTokens) == [2, 9])
    }

    @Test("routers built in one process keep separate registries; /metrics counts by route pattern")
    func inProcess() async throws {
        for _ in 0..<2 {
            let daemon = try await TestDaemon()
            try await daemon.serve { client in
                for _ in 0..<2 {
                    try await client.execute(uri: "/api/v1/models/running/nosuch", method: .get) { #expect($0.status == .notFound) }
                }
                try await client.execute(uri: "/metrics", method: .get) { response in
                    #expect(response.status == .ok)
                    let samples = try await parsePrometheus(String(buffer: response.body))
                    #expect(samples.value("modeld_http_requests_total", ["route": "/api/v1/models/running/{id}", "code": "404", "model": ""]) == 2)
                    #expect(samples.value("modeld_runs", ["state": "ready"]) == 0)
                }
            }
        }
    }
}
