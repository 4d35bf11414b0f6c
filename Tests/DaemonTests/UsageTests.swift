import FakeHub
import Foundation
import HTTPTypes
import Launchers
import Logging
import ModelStore
import ModeldAPI
import NIOCore
import Synchronization
import Testing

@testable import Daemon

/// A clock the tests set: the usage ledger's days and months move without waiting.
final class TestClock: Sendable {
    private let time: Mutex<Date>

    init(_ text: String) throws { time = Mutex(try UsageController.time(text, name: "clock")) }

    var now: @Sendable () -> Date { { self.time.withLock { $0 } } }

    func set(_ text: String) throws {
        let date = try UsageController.time(text, name: "clock")
        time.withLock { $0 = date }
    }
}

@Suite("Usage accounting and quotas")
struct UsageTests {
    /// Requests to a daemon's run `tiny` (the built-in engine on the tiny model) in one lane, with the engine's own
    /// counts summed: `fast` (the real openai client, kept alive: the fast path), `router` (urllib, which closes each
    /// connection: the router), `llm` (the LLM API) and `ollama` (the Ollama API); streamed and not in each. `uncounted`
    /// streams without `include_usage` on the fast path and the router: the engine reports nothing, so the expected
    /// prompt is the model's tokenizer's count (count-tokens) and the completion one token per chunk with content.
    static let traffic = """
        import sys, json, urllib.request, openai
        base, key, lane = sys.argv[1], sys.argv[2], sys.argv[3]
        totals = {"prompt": 0, "completion": 0, "requests": 0}
        def add(prompt, completion):
            totals["prompt"] += prompt
            totals["completion"] += completion
            totals["requests"] += 1
        def post(path, body):
            request = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json", "Authorization": "Bearer " + key})
            return urllib.request.urlopen(request).read()
        chat = dict(model="tiny", messages=[{"role": "user", "content": "Hello there"}], max_tokens=5, temperature=0)
        if lane == "fast":
            client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
            plain = client.chat.completions.create(extra_body={"ignore_eos": True}, **chat)
            add(plain.usage.prompt_tokens, plain.usage.completion_tokens)
            chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True},
                                                         extra_body={"ignore_eos": True}, **chat))
            usage = [c.usage for c in chunks if c.usage][-1]
            add(usage.prompt_tokens, usage.completion_tokens)
            done = client.completions.create(model="tiny", prompt="Hello", max_tokens=3, temperature=0, extra_body={"ignore_eos": True})
            add(done.usage.prompt_tokens, done.usage.completion_tokens)
        elif lane == "router":
            plain = json.loads(post("/v1/chat/completions", dict(chat, ignore_eos=True)))["usage"]
            add(plain["prompt_tokens"], plain["completion_tokens"])
            lines = post("/v1/chat/completions", dict(chat, ignore_eos=True, stream=True, stream_options={"include_usage": True}))
            events = [json.loads(line[6:]) for line in lines.decode().split("\\n") if line.startswith("data: {")]
            usage = [event["usage"] for event in events if event.get("usage")][-1]
            add(usage["prompt_tokens"], usage["completion_tokens"])
        elif lane == "llm":
            plain = json.loads(post("/api/v1/llm/chat", dict(chat, ignore_eos=True)))["data"]["usage"]
            add(plain["prompt_tokens"], plain["completion_tokens"])
            events = [json.loads(line) for line in post("/api/v1/llm/generate", {"model": "tiny", "prompt": "Hello", "max_tokens": 4,
                      "temperature": 0, "ignore_eos": True, "stream": True}).splitlines() if line.strip()]
            add(events[-1]["usage"]["prompt_tokens"], events[-1]["usage"]["completion_tokens"])
        elif lane == "ollama":
            options = {"temperature": 0, "num_predict": 4}
            plain = json.loads(post("/api/chat", {"model": "acme/qwen2-tiny", "messages": chat["messages"], "stream": False, "options": options}))
            add(plain["prompt_eval_count"], plain["eval_count"])
            lines = [json.loads(line) for line in post("/api/generate", {"model": "acme/qwen2-tiny", "prompt": "Hello", "options": options}).splitlines()
                     if line.strip()]
            add(lines[-1]["prompt_eval_count"], lines[-1]["eval_count"])
        elif lane == "uncounted":
            client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
            counted = json.loads(post("/api/v1/llm/count-tokens", {"model": "tiny", "messages": chat["messages"]}))["data"]["tokens"]
            chunks = client.chat.completions.create(stream=True, extra_body={"ignore_eos": True}, **chat)
            add(counted, sum(1 for c in chunks if c.choices and c.choices[0].delta.content))
            lines = post("/v1/chat/completions", dict(chat, ignore_eos=True, stream=True)).decode().split("\\n")
            events = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
            add(counted, sum(1 for e in events if e["choices"] and e["choices"][0]["delta"].get("content")))
        print(json.dumps(totals))
        """

    @Test(
        "usage rows equal what the built-in engine reported, through the fast path, the router, the LLM API and the Ollama API, streamed and not; grouped by key, model, backend and day",
        .timeLimit(.minutes(4)))
    func recordedUsage() async throws {
        let files = try TinyQwen2.hubFiles()
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/qwen2-tiny", commits: [FakeCommit(files: files)])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                #expect(try await daemon.modelctl(["pull", "acme/qwen2-tiny"]).status == 0)
                let started = try await daemon.modelctl(["start", "acme/qwen2-tiny", "--engine", "builtin", "--name", "tiny", "--wait"])
                #expect(started.status == 0, "\(started.stderr)\nmodeld log:\n\(daemon.log)")
                let created = try await daemon.modelctl(["keys", "create", "--name", "app", "--json"])
                let key = try WireJSON.decoder().decode(KeyInfo.self, from: Data(created.stdout.utf8))
                let secret = try #require(key.key)

                func total() async throws -> UsageGroup? {
                    let shown = try await daemon.modelctl(["usage", "--json"])
                    #expect(shown.status == 0, "\(shown.stderr)")
                    return try WireJSON.decoder().decode(UsageReport.self, from: Data(shown.stdout.utf8)).groups.first
                }
                var expected = (prompt: 0, completion: 0, requests: 0)
                for lane in ["fast", "router", "llm", "ollama", "uncounted"] {
                    let fastBefore = daemon.log.components(separatedBy: "via=fast-path").count
                    let run = try await runProcess(
                        URL(filePath: "/usr/bin/env"), ["python3", "-c", Self.traffic, "http://127.0.0.1:\(daemon.port)", secret, lane])
                    #expect(run.status == 0, "\(lane): \(run.stdout)\(run.stderr)")
                    let sent = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Int], "\(lane): \(run.stderr)")
                    #expect(sent["prompt", default: 0] > 0, "\(lane): \(run.stdout)")
                    expected.prompt += sent["prompt", default: 0]
                    expected.completion += sent["completion", default: 0]
                    expected.requests += sent["requests", default: 0]
                    // After each lane, the totals equal the engine's counts so far.
                    let recorded = try #require(try await total(), "\(lane): no usage")
                    #expect(recorded.promptTokens == expected.prompt, "\(lane): \(recorded) vs \(expected)")
                    #expect(recorded.completionTokens == expected.completion, "\(lane): \(recorded) vs \(expected)")
                    #expect(recorded.requests == expected.requests && recorded.errors == 0, "\(lane): \(recorded)")
                    let fastAfter = daemon.log.components(separatedBy: "via=fast-path").count
                    #expect((fastAfter - fastBefore > 0) == ["fast", "uncounted"].contains(lane), "\(lane) took the wrong lane")
                }

                // One request without a key, on the control socket.
                let socket = daemon.root.appending(path: "modeld.sock").path
                let unkeyed = try await runProcess(
                    URL(filePath: "/usr/bin/curl"),
                    [
                        "-s", "--unix-socket", socket, "-H", "Content-Type: application/json", "--data-binary",
                        #"{"model": "tiny", "prompt": "Hi", "max_tokens": 2, "ignore_eos": true}"#, "http://localhost/v1/completions",
                    ])
                let unkeyedUsage = try #require(JSONMembers(Array(unkeyed.stdout.utf8))?.object("usage"), "\(unkeyed.stdout)")
                let unkeyedTokens = (unkeyedUsage.int("prompt_tokens") ?? 0) + (unkeyedUsage.int("completion_tokens") ?? 0)

                func groups(_ by: String) async throws -> [UsageGroup] {
                    let shown = try await daemon.modelctl(["usage", "--by", by, "--json"])
                    #expect(shown.status == 0, "\(shown.stderr)")
                    return try WireJSON.decoder().decode(UsageReport.self, from: Data(shown.stdout.utf8)).groups
                }
                let byKey = try await groups("key")
                #expect(Set(byKey.map(\.group)) == ["none", key.id], "\(byKey)")
                let keyed = try #require(byKey.first { $0.group == key.id })
                #expect(keyed.name == "app" && keyed.totalTokens == expected.prompt + expected.completion && keyed.requests == expected.requests)
                #expect(byKey.first { $0.group == "none" }.map { ($0.totalTokens, $0.requests) }! == (unkeyedTokens, 1))
                let all = expected.prompt + expected.completion + unkeyedTokens
                let byModel = try await groups("model"), byBackend = try await groups("backend"), byDay = try await groups("day")
                #expect(byModel.map(\.group) == ["acme/qwen2-tiny"] && byModel.first?.totalTokens == all, "\(byModel)")
                #expect(byBackend.map(\.group) == ["local:tiny"] && byBackend.first?.totalTokens == all, "\(byBackend)")
                #expect(byBackend.first?.cost == 0 && byBackend.first.map { $0.meanLatencyMs > 0 } == true, "\(byBackend)")
                #expect(byDay.map(\.group) == [String(WireJSON.iso8601(Date()).prefix(10))] && byDay.first?.requests == expected.requests + 1)

                // The table for a person; a bad grouping is refused before any request.
                let table = try await daemon.modelctl(["usage", "--by", "model"])
                #expect(table.status == 0 && table.stdout.contains("acme/qwen2-tiny") && table.stdout.contains("\(all)"), "\(table.stdout)")
                #expect(try await daemon.modelctl(["usage", "--by", "colour"]).status != 0)
                let badTime = try await daemon.modelctl(["usage", "--from", "yesterday"])
                #expect(badTime.status != 0 && badTime.stderr.contains("from must be a UTC day"), "\(badTime.stderr)")
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }

    /// A daemon whose built-in engine is modeld's own, with a ready run `tiny` of the tiny model, on `clock`.
    static func servedTiny(_ clock: TestClock, _ body: @Sendable (DaemonTestClient, TestDaemon) async throws -> Void) async throws {
        let daemon = try await TestDaemon(
            environment: ["MODELD_BUILTIN_COMMAND": productsDirectory.appending(path: "modeld").path], now: clock.now)
        let spec = LaunchSpec(engine: .builtin, modelPath: TinyQwen2.directory.path, servedName: "tiny")
        try await daemon.serve { client in
            let run = try await daemon.context.scheduler.start(RunRequest(name: "tiny", model: "acme/qwen2-tiny", spec: spec, keepAlive: nil))
            let ready = try await daemon.context.supervisor.waitUntilSettled(run.runID, timeout: .seconds(60))
            #expect(ready.state == .ready, "\(ready.reason ?? "")")
            try await body(client, daemon)
        }
    }

    /// POSTs JSON with a key; the status, the `Retry-After` header and the body.
    static func post(_ client: DaemonTestClient, _ path: String, _ body: String, key: String) async throws -> (Int, String?, String) {
        try await client.execute(
            uri: path, method: .post, headers: [.authorization: "Bearer \(key)", .contentType: "application/json"], body: ByteBuffer(string: body)
        ) { reply in (Int(reply.status.code), reply.headers[.retryAfter], String(buffer: reply.body)) }
    }

    static func createKey(_ client: DaemonTestClient, _ body: String, admin: String?) async throws -> String {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let admin { headers[.authorization] = "Bearer \(admin)" }
        return try await client.execute(uri: "/api/v1/keys", method: .post, headers: headers, body: ByteBuffer(string: body)) { reply in
            #expect(reply.status == .ok, "\(String(buffer: reply.body))")
            return try #require(JSONMembers(Array(reply.body.readableBytesView))?.object("data")?.string("key"))
        }
    }

    @Test(
        "quotas: tokens per day and per month refuse with 429 naming the limit and its reset on the OpenAI, LLM and Ollama APIs, and reset when the day or month turns; allowed models; the openai client sees the message",
        .timeLimit(.minutes(3)))
    func quotas() async throws {
        let clock = try TestClock("2026-12-06T10:00:00Z")
        try await Self.servedTiny(clock) { client, daemon in
            let admin = try await Self.createKey(client, #"{"name": "admin", "scope": "admin"}"#, admin: nil)
            let daily = try await Self.createKey(client, #"{"name": "daily", "tokens_per_day": 5}"#, admin: admin)
            let monthly = try await Self.createKey(client, #"{"name": "monthly", "tokens_per_month": 5}"#, admin: admin)
            let narrow = try await Self.createKey(client, #"{"name": "narrow", "allowed_models": ["other", "TINY"]}"#, admin: admin)
            let elsewhere = try await Self.createKey(client, #"{"name": "elsewhere", "allowed_models": ["other"]}"#, admin: admin)
            let chat = #"{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2, "ignore_eos": true}"#

            // The first request is allowed and uses more than the quota; the next ones are refused on every family.
            var (status, _, body) = try await Self.post(client, "/v1/chat/completions", chat, key: daily)
            #expect(status == 200, "\(body)")
            let dayMessage = "API key daily has used its 5 tokens per day"
            let dayReset = "it resets at 2026-12-07T00:00:00Z (in 50400 s)"
            var retry: String?
            (status, retry, body) = try await Self.post(client, "/v1/chat/completions", chat, key: daily)
            #expect(status == 429 && retry == "50400", "\(body)")
            let error = try #require(JSONMembers(Array(body.utf8))?.object("error"), "OpenAI's error shape: \(body)")
            #expect(error.string("message").map { $0.contains(dayMessage) && $0.contains(dayReset) } == true, "\(body)")
            (status, retry, body) = try await Self.post(client, "/api/v1/llm/chat", chat, key: daily)
            #expect(status == 429 && retry == "50400", "\(body)")
            #expect(JSONMembers(Array(body.utf8))?.string("msg").map { $0.contains(dayMessage) && $0.contains(dayReset) } == true, "\(body)")
            (status, _, body) = try await Self.post(
                client, "/api/chat", #"{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}]}"#, key: daily)
            #expect(status == 429, "\(body)")
            #expect(JSONMembers(Array(body.utf8))?.string("error").map { $0.contains(dayMessage) } == true, "Ollama's error shape: \(body)")
            // Routes that reach no backend are not metered.
            try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer \(daily)"]) { #expect($0.status == .ok) }

            // The real openai client raises RateLimitError with the message.
            let script = """
                import sys, openai
                client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key=sys.argv[2], max_retries=0)
                try:
                    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
                    print("allowed")
                except openai.RateLimitError as error:
                    print(error.status_code, error.body["message"])
                """
            let python = try await runProcess(URL(filePath: "/usr/bin/env"), ["python3", "-c", script, "http://127.0.0.1:\(client.port)", daily])
            #expect(python.stdout.hasPrefix("429 \(dayMessage)") && python.stdout.contains(dayReset), "\(python.stdout)\(python.stderr)")

            // The month's quota outlasts the day.
            (status, _, _) = try await Self.post(client, "/v1/chat/completions", chat, key: monthly)
            #expect(status == 200)
            try clock.set("2026-12-31T23:00:00Z")
            (status, retry, body) = try await Self.post(client, "/v1/chat/completions", chat, key: monthly)
            #expect(status == 429 && retry == "3600", "\(body)")
            #expect(
                body.contains("API key monthly has used its 5 tokens per month") && body.contains("resets at 2027-01-01T00:00:00Z (in 3600 s)"),
                "\(body)")
            // The daily key's day has turned.
            (status, _, body) = try await Self.post(client, "/v1/chat/completions", chat, key: daily)
            #expect(status == 200, "\(body)")
            try clock.set("2027-01-01T00:00:01Z")
            (status, _, body) = try await Self.post(client, "/v1/chat/completions", chat, key: monthly)
            #expect(status == 200, "the month turned: \(body)")

            // Allowed models, case-insensitively, on every family; a refusal names what the key may use.
            (status, _, body) = try await Self.post(client, "/v1/chat/completions", chat, key: narrow)
            #expect(status == 200, "\(body)")
            for (path, request) in [
                ("/v1/chat/completions", chat), ("/api/v1/llm/chat", chat),
                ("/api/chat", #"{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stream": false}"#),
            ] {
                (status, _, body) = try await Self.post(client, path, request, key: elsewhere)
                #expect(status == 403 && body.contains("API key elsewhere may not use model tiny; it may use other"), "\(path): \(body)")
            }

            // The refused requests reached no backend: only the allowed ones are in the ledger.
            await daemon.context.usage.flushed()
            let sums = try await daemon.context.store.usageSums(from: .distantPast, to: .distantFuture, groupedBy: nil)
            #expect(sums.first?.requests == 5, "\(sums)")
        }
    }

    @Test("keys API: limits set at creation and changed by PATCH, 0 removes one, bad values refused; modelctl keys update")
    func keyLimits() async throws {
        let daemon = try await TestDaemon()
        try await daemon.serve { client in
            let admin = try await Self.createKey(client, #"{"name": "admin", "scope": "admin", "tokens_per_day": 100, "spend_cap": 2.5}"#, admin: nil)
            func patch(_ body: String) async throws -> (Int, String) {
                try await client.execute(
                    uri: "/api/v1/keys/admin", method: .patch, headers: [.authorization: "Bearer \(admin)", .contentType: "application/json"],
                    body: ByteBuffer(string: body)
                ) { (Int($0.status.code), String(buffer: $0.body)) }
            }
            var (status, body) = try await patch(#"{"tokens_per_month": 1000, "allowed_models": ["a", "b"], "tokens_per_day": 0}"#)
            #expect(status == 200, "\(body)")
            let info = try WireJSON.decoder().decode(Envelope<KeyInfo>.self, from: Data(body.utf8)).data
            #expect(info?.tokensPerDay == nil && info?.tokensPerMonth == 1000, "\(body)")
            #expect(info?.spendCap == 2.5 && info?.allowedModels == ["a", "b"], "\(body)")
            for bad in [#"{"tokens_per_day": -1}"#, #"{"spend_cap": -2}"#, #"{"allowed_models": [""]}"#] {
                (status, body) = try await patch(bad)
                #expect(status == 400, "\(bad): \(body)")
            }
            (status, body) = try await client.execute(
                uri: "/api/v1/keys/nosuch", method: .patch, headers: [.authorization: "Bearer \(admin)", .contentType: "application/json"],
                body: ByteBuffer(string: "{}")
            ) { (Int($0.status.code), String(buffer: $0.body)) }
            #expect(status == 404, "\(body)")

            // modelctl on the control socket.
            let environment = ["HOME": daemon.root.path, "MODELD_CONTROL_SOCKET": daemon.context.configuration.controlSocket]
            let modelctl = productsDirectory.appending(path: "modelctl")
            let updated = try await runProcess(
                modelctl, ["keys", "update", "admin", "--tokens-per-day", "7", "--models", "x, y", "--spend-cap", "0", "--json"],
                environment: environment)
            #expect(updated.status == 0, "\(updated.stderr)")
            let key = try WireJSON.decoder().decode(KeyInfo.self, from: Data(updated.stdout.utf8))
            #expect(key.tokensPerDay == 7 && key.allowedModels == ["x", "y"] && key.spendCap == nil && key.tokensPerMonth == 1000)
            let listed = try await runProcess(modelctl, ["keys", "list"], environment: environment)
            #expect(listed.stdout.contains("7 tokens/day, 1000 tokens/month, models x, y"), "\(listed.stdout)")
            #expect(try await runProcess(modelctl, ["keys", "update", "admin"], environment: environment).status != 0)
        }
    }

    @Test("the ledger: rows older than the retention are rolled up per day with the same sums; spending caps; counters seeded from the store")
    func ledger() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "usage-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let store = try Store(path: root.appending(path: "modeld.sqlite").path)
        let clock = try TestClock("2026-10-01T10:00:00Z")
        let ledger = UsageLedger(store: store, retention: .seconds(7 * 86400), logger: Logger(label: "test"), now: clock.now)
        let (key, _) = try await store.createAPIKey(name: "spender", scope: "inference", limits: APIKeyLimits(spendCap: 2))
        // At 62,500 per million tokens each way, a row costs (prompt + completion) / 16: exact in binary.
        func record(_ at: String, model: String, prompt: Int, completion: Int, status: Int = 200) throws {
            try clock.set(at)
            ledger.record(
                UsageLedger.Entry(
                    keyID: key.id, model: model, backend: "local:\(model)", route: "/v1/completions", promptTokens: prompt,
                    completionTokens: completion, latency: .milliseconds(10), status: status, costIn: 62_500, costOut: 62_500))
        }
        try record("2026-10-01T10:00:00Z", model: "a", prompt: 1, completion: 2)
        try record("2026-10-01T23:59:59Z", model: "a", prompt: 3, completion: 4, status: 502)
        try record("2026-10-02T00:00:00Z", model: "b", prompt: 5, completion: 6)
        try record("2026-10-20T12:00:00Z", model: "a", prompt: 7, completion: 8)
        // Over the cap (3, 7, 11 and 15 tokens: 36 / 16 = 2.25 this month, and October's spending is what counts).
        let spender = try #require(try await store.activeAPIKeys().values.first)
        let denial = try #require(ledger.denial(for: spender))
        #expect(
            denial.message
                == "API key spender has reached its spending cap of 2 per month (2.25 spent); it resets at 2026-11-01T00:00:00Z (in 993600 s)"
        )
        #expect(denial.retryAfter == 993_600)

        await ledger.flushed()
        let before = try await store.usageSums(from: .distantPast, to: .distantFuture, groupedBy: .day)
        let byModel = try await store.usageSums(from: .distantPast, to: .distantFuture, groupedBy: .model)
        try clock.set("2026-10-25T08:00:00Z")
        try await ledger.rollUp()
        // Rows before 2026-10-18 (the retention from the start of its day) are summed per day; the later one stays.
        #expect(try await store.usageRowCounts() == (rows: 1, daily: 2))
        #expect(try await store.usageSums(from: .distantPast, to: .distantFuture, groupedBy: .day) == before)
        #expect(try await store.usageSums(from: .distantPast, to: .distantFuture, groupedBy: .model) == byModel)
        #expect(before.map(\.group) == ["2026-10-01", "2026-10-02", "2026-10-20"] && before.map(\.errors) == [1, 0, 0] && before[0].requests == 2)
        // A range counts a rolled-up day from its start.
        let october2 = try await store.usageSums(
            from: try UsageController.time("2026-10-02", name: "from"), to: try UsageController.time("2026-10-03", name: "to"), groupedBy: nil)
        #expect(october2.map(\.promptTokens) == [5] && october2.map(\.completionTokens) == [6])
        try await ledger.rollUp()
        #expect(try await store.usageRowCounts() == (rows: 1, daily: 2), "a second roll-up changes nothing")

        // A new ledger on the same store (a restart) starts from what the store holds, rolled up or not.
        let restarted = UsageLedger(store: store, retention: .seconds(7 * 86400), logger: Logger(label: "test"), now: clock.now)
        try await restarted.seed()
        #expect(restarted.usage(ofKey: key.id) == KeyUsage(dayTokens: 0, monthTokens: 36, monthCost: 2.25))
        try clock.set("2026-10-20T13:00:00Z")
        try await restarted.seed()
        #expect(restarted.usage(ofKey: key.id) == KeyUsage(dayTokens: 15, monthTokens: 36, monthCost: 2.25))
        try clock.set("2026-11-01T00:00:00Z")
        #expect(restarted.usage(ofKey: key.id) == KeyUsage(), "a new month starts from nothing")
        #expect(restarted.denial(for: spender) == nil)
    }
}
