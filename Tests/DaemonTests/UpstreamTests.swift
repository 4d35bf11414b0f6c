import FakeHub
import Foundation
import ModelStore
import ModeldAPI
import ModeldClient
import Testing

@testable import Daemon

/// Upstreams behind the gateway (docs/gateway.md): managed by API and modelctl, routed by strategy, failed over
/// before the first byte, cooled down and probed; against real daemons and fake upstreams on loopback.
@Suite("Upstreams")
struct UpstreamTests {
    /// A request to the daemon with curl: status, headers (lower-case names), body and curl's exit status.
    static func post(
        _ daemon: DaemonProcess, _ path: String, _ body: String, key: String? = nil
    ) async throws -> (status: Int, headers: [String: String], body: String, exit: Int32) {
        let headersFile = daemon.root.appending(path: "headers-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: headersFile) }
        var arguments = [
            "-s", "-N", "-D", headersFile.path, "-H", "Content-Type: application/json", "--data-binary", body,
            "http://127.0.0.1:\(daemon.port)\(path)",
        ]
        if let key { arguments += ["-H", "Authorization: Bearer \(key)"] }
        let result = try await runProcess(URL(filePath: "/usr/bin/curl"), arguments)
        let lines = ((try? String(contentsOf: headersFile, encoding: .utf8)) ?? "").split(separator: "\r\n")
        let status = lines.first.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, headers, result.stdout, result.status)
    }

    static func chat(_ model: String, stream: Bool = false) -> String {
        #"{"model": "\#(model)", "stream": \#(stream), "messages": [{"role": "user", "content": "Hi"}]}"#
    }

    /// Waits (bounded) until `condition` holds.
    static func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<400 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("timed out waiting until \(what)")
    }

    static func upstreams(_ daemon: DaemonProcess) async throws -> [UpstreamInfo] {
        let listed = try await daemon.modelctl(["upstream", "list", "--json"])
        return try WireJSON.decoder().decode([UpstreamInfo].self, from: Data(listed.stdout.utf8))
    }

    /// Runs `body` with a daemon (its environment extended) and stops it afterwards, also on failure.
    static func withDaemon(_ environment: [String: String] = [:], _ body: (DaemonProcess) async throws -> Void) async throws {
        let daemon = try await DaemonProcess(extraEnvironment: environment)
        do {
            try await body(daemon)
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }

    @Test(
        "modelctl upstream add, list, test, disable, enable, rm; bad input refused with one line; the key only by variable or file, never stored, shown or logged"
    )
    func management() async throws {
        let secret = "sk-test-\(UUID().uuidString)"
        let keyFile = FileManager.default.temporaryDirectory.appending(path: "upstream-key-\(UUID().uuidString.prefix(8))")
        try Data("\(secret)\n".utf8).write(to: keyFile)
        defer { try? FileManager.default.removeItem(at: keyFile) }
        try await FakeUpstream.withRunning(["alpha"]) { fakes in
            let fake = fakes[0]
            fake.require(key: secret)
            try await Self.withDaemon(["PROVIDER_KEY": secret]) { daemon in
                // Refused, each with a message that names the problem, nothing stored.
                for (arguments, message) in [
                    (["--url", "https://\(secret)@api.example.com/v1", "--models", "m"], "must not hold a user"),
                    (["--url", "ftp://example.com", "--models", "m"], "http:// or https://"),
                    (["--url", fake.url + "/v1", "--api-key-env", secret, "--models", "m"], "must name an environment variable"),
                    (["--url", fake.url + "/v1", "--api-key-file", "relative/key", "--models", "m"], "absolute path"),
                    (["--url", fake.url + "/v1", "--kind", "azure", "--discover"], "deployments"),
                    (["--url", fake.url + "/v1", "--models", "m", "--max-concurrency", "0"], "max_concurrency"),
                ] {
                    let refused = try await daemon.modelctl(["upstream", "add", "bad"] + arguments)
                    #expect(refused.status == 1 && refused.stderr.contains(message), "\(arguments): \(refused.stderr)")
                    #expect(!refused.stderr.trimmingCharacters(in: .whitespacesAndNewlines).contains("\n"))
                }
                let both = try await daemon.modelctl([
                    "upstream", "add", "bad", "--url", fake.url, "--models", "m", "--api-key-env", "A", "--api-key-file", "/k",
                ])
                #expect(both.status != 0)
                #expect(try await Self.upstreams(daemon).isEmpty)

                // By variable: modeld reads the key from its own environment.
                let added = try await daemon.modelctl([
                    "upstream", "add", "alpha", "--url", fake.url + "/v1", "--api-key-env", "PROVIDER_KEY", "--models", "gpt-x,gpt-y", "--priority",
                    "2",
                    "--weight", "3", "--cost-in", "1.5", "--cost-out", "6", "--max-concurrency", "4", "--timeout", "20s",
                ])
                #expect(added.status == 0, "\(added.stderr)")
                var listed = try await Self.upstreams(daemon)
                let alpha = try #require(listed.first)
                #expect(alpha.name == "alpha" && alpha.kind == .openai && alpha.apiKeyEnv == "PROVIDER_KEY" && alpha.apiKeySet)
                #expect(alpha.models == ["gpt-x", "gpt-y"] && alpha.priority == 2 && alpha.weight == 3 && alpha.costIn == 1.5 && alpha.costOut == 6)
                #expect(alpha.maxConcurrency == 4 && alpha.timeout == 20 && alpha.state == "up")
                let tested = try await daemon.modelctl(["upstream", "test", "alpha"])
                #expect(tested.status == 0 && tested.stdout.contains("ok"), "\(tested.stdout) \(tested.stderr)")
                #expect(fake.requests.last?.authorization == "Bearer \(secret)" && fake.requests.last?.path == "/v1/models")

                let reply = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x"))
                #expect(reply.status == 200 && reply.body.contains("from alpha"), "\(reply.body)")
                #expect(fake.completions.last?.authorization == "Bearer \(secret)")

                // By file, replacing the settings: same name.
                #expect(
                    try await daemon.modelctl([
                        "upstream", "add", "alpha", "--url", fake.url + "/v1", "--api-key-file", keyFile.path, "--models", "gpt-x",
                    ]).status == 0)
                listed = try await Self.upstreams(daemon)
                #expect(listed.count == 1 && listed[0].apiKeyFile == keyFile.path && listed[0].apiKeyEnv == nil && listed[0].apiKeySet)
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x")).status == 200)
                let table = try await daemon.modelctl(["upstream", "list"])
                #expect(table.stdout.contains("alpha") && table.stdout.contains(keyFile.path))

                // A variable that is not set: listed as missing, `test` fails with one line naming it.
                #expect(
                    try await daemon.modelctl([
                        "upstream", "add", "gamma", "--url", fake.url + "/v1", "--api-key-env", "NOT_SET_HERE", "--models", "g",
                    ]).status == 0)
                let missing = try await daemon.modelctl(["upstream", "test", "gamma"])
                #expect(missing.status == 1 && missing.stderr.contains("NOT_SET_HERE"), "\(missing.stderr)")

                // Disabled: no traffic; enabled again: traffic.
                #expect(try await daemon.modelctl(["upstream", "disable", "alpha"]).status == 0)
                #expect(try await Self.upstreams(daemon).first { $0.name == "alpha" }?.state == "disabled")
                let disabled = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x"))
                #expect(disabled.status == 404 && disabled.body.contains("not running here and not pulled"), "\(disabled.body)")
                #expect(try await daemon.modelctl(["upstream", "enable", "alpha"]).status == 0)
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x")).status == 200)
                let models = try await KeysTests.get(daemon, "/v1/models")
                #expect(models.1.contains("\"gpt-x\"") && models.1.contains("upstream:alpha"), "\(models.1)")

                #expect(try await daemon.modelctl(["upstream", "rm", "gamma"]).status == 0)
                let gone = try await daemon.modelctl(["upstream", "rm", "gamma"])
                #expect(gone.status == 1 && gone.stderr.contains("no upstream gamma"))

                // The key is nowhere but in modeld's memory: not in any reply, log line or the store's files.
                let everything =
                    try await daemon.modelctl(["upstream", "list", "--json"]).stdout
                    + (try await KeysTests.get(daemon, "/api/v1/upstreams")).1 + (try await KeysTests.get(daemon, "/api/v1/upstreams/alpha")).1
                    + (try await KeysTests.get(daemon, "/metrics")).1 + (try await KeysTests.get(daemon, "/openapi.json")).1
                #expect(!everything.contains(secret))
                #expect(!daemon.log.contains(secret), "the key is in the log")
                #expect(daemon.log.contains("gateway attempt") && daemon.log.contains("backend=upstream:alpha"), "\(daemon.log)")
                for file in try FileManager.default.contentsOfDirectory(atPath: daemon.root.path) where file.hasPrefix("modeld.sqlite") {
                    let bytes = try Data(contentsOf: daemon.root.appending(path: file))
                    #expect(bytes.range(of: Data(secret.utf8)) == nil, "the key is in \(file)")
                }
            }
        }
    }

    @Test("each strategy's order: local-first, priority, weighted, round-robin, least-busy, latency, cost; groups alias several models")
    func strategies() async throws {
        let daemon = try await TestDaemon()
        let router = daemon.context.router
        let store = daemon.context.store
        func add(_ name: String, priority: Int = 0, weight: Int = 1, cost: Double = 0, models: [String] = ["m"]) async throws {
            _ = try await store.saveUpstream(
                UpstreamRecord(
                    name: name, kind: "openai", url: "http://127.0.0.1:1/v1", models: models, priority: priority, weight: weight, costIn: cost,
                    costOut: cost))
        }
        try await add("a", priority: 2, weight: 3, cost: 5)
        try await add("b", priority: 1, weight: 1, cost: 1)
        try await add("c", priority: 3, weight: 0, cost: 2, models: ["other"])
        try await router.reload()
        func order(_ model: String, _ strategy: RoutingStrategy?) async throws -> [String] {
            try await store.saveModelGroup(ModelGroupRecord(name: model, targets: [], strategy: strategy?.rawValue))
            try await router.reload()
            return router.plan(model).map(\.name)
        }
        // No local run of m: its on-demand start comes first under local-first, last under the others.
        #expect(try await order("m", .localFirst) == ["local:m", "upstream:b", "upstream:a"])
        #expect(try await order("m", .priority) == ["upstream:b", "upstream:a", "local:m"])
        #expect(try await order("m", .cost) == ["upstream:b", "upstream:a", "local:m"])
        // Weighted 3:1, smoothly: a, a, b, a; then again.
        _ = try await order("m", .weighted)
        try await router.reload()
        var firsts: [String] = []
        for _ in 0..<8 { firsts.append(router.plan("m").first!.name) }
        #expect(firsts.filter { $0 == "upstream:a" }.count == 6 && firsts.filter { $0 == "upstream:b" }.count == 2, "\(firsts)")
        #expect(!firsts.starts(with: ["upstream:b", "upstream:b"]))
        _ = try await order("m", .roundRobin)
        let turns = (0..<4).map { _ in router.plan("m").first!.name }
        #expect(
            turns == ["upstream:a", "upstream:b", "upstream:a", "upstream:b"] || turns == ["upstream:b", "upstream:a", "upstream:b", "upstream:a"],
            "\(turns)")
        _ = try await order("m", .leastBusy)
        router.began("upstream:a")
        #expect(router.plan("m").first?.name == "upstream:b")
        router.ended("upstream:a")
        router.began("upstream:b")
        #expect(router.plan("m").first?.name == "upstream:a")
        router.ended("upstream:b")
        // Latency: the lower moving average first; an untried backend before both.
        _ = try await order("m", .latency)
        router.firstToken("upstream:a", after: .milliseconds(50))
        #expect(router.plan("m").map(\.name).prefix(2) == ["upstream:b", "upstream:a"], "b is untried")
        router.firstToken("upstream:b", after: .milliseconds(400))
        #expect(router.plan("m").map(\.name).prefix(2) == ["upstream:a", "upstream:b"])
        for _ in 0..<10 { router.firstToken("upstream:a", after: .milliseconds(900)) }
        #expect(router.plan("m").map(\.name).prefix(2) == ["upstream:b", "upstream:a"], "a's average moved past b's")

        // A group aliases several models: every backend of each, by the group's strategy.
        try await store.saveModelGroup(ModelGroupRecord(name: "chat", targets: ["m", "other"], strategy: RoutingStrategy.priority.rawValue))
        try await router.reload()
        #expect(router.plan("chat").map(\.name) == ["upstream:b", "upstream:a", "upstream:c", "local:m", "local:other"])
        if case .upstream(_, let served) = router.plan("chat")[2] { #expect(served == "other") } else { Issue.record("c is not third") }
        #expect(!router.servesLocallyOnly("chat") && !router.servesLocallyOnly("M") && router.servesLocallyOnly("qwen"))
        // A strategy by default: the daemon's setting.
        let byDefault = try await TestDaemon(environment: ["MODELD_ROUTING_STRATEGY": "cost"])
        #expect(byDefault.context.router.settings.strategy == .cost)
        await #expect(throws: ConfigurationError.self) { _ = try await TestDaemon(environment: ["MODELD_ROUTING_STRATEGY": "fastest"]) }
    }

    @Test(
        "failover before the first byte (500, 429, refused, a hang past the time-out), at most max_failovers times; none after it: the client sees the cut"
    )
    func failover() async throws {
        try await FakeUpstream.withRunning(["a", "b", "c"]) { fakes in
            let (a, b, c) = (fakes[0], fakes[1], fakes[2])
            try await Self.withDaemon(["MODELD_MAX_FAILOVERS": "1", "MODELD_COOLDOWN_FAILURES": "100"]) { daemon in
                for (fake, priority) in [(a, 1), (b, 2), (c, 3)] {
                    let added = try await daemon.modelctl([
                        "upstream", "add", fake.name, "--url", fake.url + "/v1", "--models", "gpt-x", "--priority", "\(priority)",
                    ])
                    #expect(added.status == 0, "\(added.stderr)")
                }
                // Healthy: the first by priority answers.
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x")).body.contains("from a"))

                for behaviour in [FakeUpstream.Behaviour.status(500), .rateLimited("7"), .hang] {
                    // Only a's hang is meant to time out: a loaded host's slow reply is no failure before it.
                    if behaviour == .hang {
                        let shortened = try await daemon.modelctl([
                            "upstream", "add", "a", "--url", a.url + "/v1", "--models", "gpt-x", "--priority", "1", "--timeout", "1",
                        ])
                        #expect(shortened.status == 0, "\(shortened.stderr)")
                    }
                    a.behave(behaviour)
                    let before = b.completions.count
                    let started = ContinuousClock.now
                    for stream in [false, true] {
                        let reply = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x", stream: stream))
                        #expect(reply.status == 200 && reply.body.contains("chatcmpl-b"), "\(behaviour): \(reply)")
                        #expect(!reply.body.contains("failed on purpose"))
                    }
                    #expect(b.completions.count == before + 2, "\(behaviour)")
                    if behaviour == .hang { #expect(ContinuousClock.now - started < .seconds(10), "the hang was cut at the 1 s time-out") }
                }
                // Refused: nothing listens on its port.
                #expect(
                    try await daemon.modelctl(["upstream", "add", "a", "--url", "http://127.0.0.1:1/v1", "--models", "gpt-x", "--priority", "1"])
                        .status == 0)
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x")).body.contains("from b"))

                // At most one failover: with a and b failing, c is not tried; the client gets b's own reply.
                b.behave(.rateLimited("9"))
                let limited = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x"))
                #expect(limited.status == 429 && limited.headers["retry-after"] == "9" && limited.body.contains("b is rate limited"), "\(limited)")
                #expect(c.completions.isEmpty)

                // After the first byte there is no failover: a stream cut mid-way reaches the client cut.
                #expect(
                    try await daemon.modelctl(["upstream", "add", "a", "--url", a.url + "/v1", "--models", "gpt-x", "--priority", "1"]).status == 0)
                a.behave(.cut)
                b.behave(.ok)
                let beforeCut = b.completions.count
                let cut = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x", stream: true))
                #expect(cut.status == 200 && cut.body.contains("chatcmpl-a") && !cut.body.contains("[DONE]"), "\(cut)")
                #expect([18, 56].contains(cut.exit), "curl saw the transfer end early (partial file, or a receive failure): exit \(cut.exit)")
                #expect(b.completions.count == beforeCut, "no failover after the first byte")

                // Every attempt is in the request log with its backend and reason; failovers are counted.
                #expect(daemon.log.contains("gateway attempt failed") && daemon.log.contains("reason=5xx") && daemon.log.contains("reason=429"))
                #expect(daemon.log.contains("reason=timeout") && daemon.log.contains("reason=connect"), "\(daemon.log)")
                let metrics = try await KeysTests.get(daemon, "/metrics").1
                #expect(metrics.contains(#"modeld_upstream_failovers_total{from="upstream:a",reason="5xx"} 2"#), "\(metrics)")
                #expect(metrics.contains(#"modeld_upstream_requests_total{backend="upstream:b",code="200"}"#))
                #expect(metrics.contains(#"modeld_backend_tokens_total{backend="upstream:b",kind="prompt"}"#))
            }
        }
    }

    @Test("K failures in the window cool an upstream down; probes bring it back once it answers")
    func cooldown() async throws {
        try await FakeUpstream.withRunning(["a", "b"]) { fakes in
            let (a, b) = (fakes[0], fakes[1])
            try await Self.withDaemon(["MODELD_COOLDOWN_FAILURES": "2", "MODELD_COOLDOWN": "1s", "MODELD_MAX_FAILOVERS": "1"]) { daemon in
                for (fake, priority) in [(a, 1), (b, 2)] {
                    #expect(
                        try await daemon.modelctl([
                            "upstream", "add", fake.name, "--url", fake.url + "/v1", "--models", "gpt-x", "--priority", "\(priority)",
                        ]).status == 0)
                }
                a.behave(.status(503))
                for _ in 0..<2 { #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x")).body.contains("from b")) }
                #expect(try await Self.upstreams(daemon).first { $0.name == "a" }?.state == "cooling")
                #expect((try await KeysTests.get(daemon, "/metrics")).1.contains(#"modeld_backend_up{backend="upstream:a"} 0"#))
                // Cooled: no traffic at all, even as the first by priority.
                let tried = a.completions.count
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x")).body.contains("from b"))
                #expect(a.completions.count == tried)
                // With b disabled too, nothing can take it now: 503, saying why.
                #expect(try await daemon.modelctl(["upstream", "disable", "b"]).status == 0)
                let none = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x"))
                #expect(none.status == 503 && none.body.contains("cooling down"), "\(none)")
                #expect(try await daemon.modelctl(["upstream", "enable", "b"]).status == 0)
                // Its probe keeps failing while it is down; once its listing answers, it gets traffic again.
                try await Self.eventually("a's listing is probed") { a.requests.contains { $0.method == "GET" } }
                #expect(try await Self.upstreams(daemon).first { $0.name == "a" }?.state == "cooling")
                a.behave(.ok)
                try await Self.eventually("a is up again") { try await Self.upstreams(daemon).first { $0.name == "a" }?.state == "up" }
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x")).body.contains("from a"))
                #expect((try await KeysTests.get(daemon, "/metrics")).1.contains(#"modeld_backend_up{backend="upstream:a"} 1"#))
                #expect(daemon.log.contains("upstream cooled down") && daemon.log.contains("upstream answers again"))
            }
        }
    }

    @Test("Azure-shaped (deployment URL, api-version, api-key) and Ollama-shaped upstreams; discovery lists models and refreshes them")
    func kinds() async throws {
        let secret = "azure-\(UUID().uuidString)"
        try await FakeUpstream.withRunning(["azure", "ollama"], models: ["llama3:8b"]) { fakes in
            let (azure, ollama) = (fakes[0], fakes[1])
            azure.require(key: secret)
            try await Self.withDaemon(["AZURE_KEY": secret, "MODELD_DISCOVERY_INTERVAL": "1s"]) { daemon in
                #expect(
                    try await daemon.modelctl([
                        "upstream", "add", "az", "--kind", "azure", "--url", azure.url, "--api-key-env", "AZURE_KEY", "--api-version", "2024-06-01",
                        "--models", "my-gpt4o",
                    ]).status == 0)
                let reply = try await Self.post(daemon, "/v1/chat/completions", Self.chat("my-gpt4o"))
                #expect(reply.status == 200, "\(reply)")
                let sent = try #require(azure.completions.last)
                #expect(sent.path == "/openai/deployments/my-gpt4o/chat/completions" && sent.query == "api-version=2024-06-01")
                #expect(sent.apiKey == secret && sent.authorization == nil)

                let added = try await daemon.modelctl(["upstream", "add", "ol", "--kind", "ollama", "--url", ollama.url, "--discover"])
                #expect(added.status == 0 && added.stdout.contains("llama3:8b"), "\(added.stdout) \(added.stderr)")
                #expect(ollama.requests.contains { $0.path == "/api/tags" })
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("llama3:8b")).body.contains("from ollama"))
                #expect(ollama.completions.last?.path == "/v1/chat/completions")
                // The listing changes: the next refresh picks it up.
                ollama.serve(models: ["llama3:8b", "qwen2.5:7b"])
                try await Self.eventually("qwen2.5:7b is discovered") {
                    try await Self.upstreams(daemon).first { $0.name == "ol" }?.models.contains("qwen2.5:7b") == true
                }
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("qwen2.5:7b")).status == 200)
                #expect(!daemon.log.contains(secret))
            }
        }
    }

    @Test("an https upstream behind a private CA: verified with the ca_bundle's CAs, refused with another CA's")
    func tls() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-upstream-ca-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let certificates = try await TestCertificates.generate(in: root)
        try await FakeUpstream.withRunning(["secure"]) { fakes in
            try await TLSFront.withRunning(certificates: certificates, backends: [fakes[0].port]) { ports in
                for (bundle, trusted) in [(certificates.caBundle, true), (certificates.otherCABundle, false)] {
                    try await Self.withDaemon(["CURL_CA_BUNDLE": bundle]) { daemon in
                        let added = try await daemon.modelctl([
                            "upstream", "add", "secure", "--url", "https://localhost:\(ports[0])/v1", "--models", "gpt-x",
                        ])
                        #expect(added.status == 0, "\(added.stderr)")
                        let tested = try await daemon.modelctl(["upstream", "test", "secure"])
                        let reply = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x"))
                        if trusted {
                            #expect(tested.status == 0, "\(tested.stderr)")
                            #expect(reply.status == 200 && reply.body.contains("from secure"), "\(reply)")
                        } else {
                            #expect(tested.status == 1, "\(tested.stdout)")
                            #expect(reply.status == 502, "\(reply)")
                        }
                    }
                }
            }
        }
    }

    @Test("another modeld as an upstream, with its API key: requests, streams and usage pass through; the key never shows")
    func modeldUpstream() async throws {
        try await withFakeVLLMDaemon { remote, _ in
            let started = try await remote.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "tiny", "--wait"])
            #expect(started.status == 0, "\(started.stderr)")
            let created = try await remote.modelctl(["keys", "create", "--name", "gateway"])
            let key = String(created.stdout.split(separator: "\n").last ?? "")
            #expect(created.status == 0 && key.hasPrefix("mdk_"))
            try await Self.withDaemon(["REMOTE_MODELD_KEY": key]) { front in
                let added = try await front.modelctl([
                    "upstream", "add", "remote", "--kind", "modeld", "--url", "http://127.0.0.1:\(remote.port)", "--api-key-env", "REMOTE_MODELD_KEY",
                    "--discover", "--models", "acme/tiny",
                ])
                #expect(added.status == 0 && added.stdout.contains("tiny"), "discovered the remote's ready run: \(added.stdout) \(added.stderr)")
                #expect(try await front.modelctl(["upstream", "test", "remote"]).status == 0)
                let reply = try await Self.post(front, "/v1/chat/completions", Self.chat("acme/tiny"))
                #expect(reply.status == 200 && reply.body.contains("chat.completion"), "\(reply)\n\(front.log)")
                let streamed = try await Self.post(front, "/v1/chat/completions", Self.chat("acme/tiny", stream: true))
                #expect(streamed.status == 200 && streamed.body.contains("data:") && streamed.body.contains("[DONE]"), "\(streamed)")
                #expect(!front.log.contains(key) && !remote.log.contains(key))
                #expect(!(try await front.modelctl(["upstream", "list", "--json"])).stdout.contains(key))
            }
        }
    }

    @Test(
        "usage rows of upstreams: the tokens they report, the cost at their cost_in and cost_out, the backend that answered a failover; a spending cap reached answers 429 with when it resets"
    )
    func usageAndCost() async throws {
        try await FakeUpstream.withRunning(["a", "b"]) { fakes in
            let (a, b) = (fakes[0], fakes[1])
            try await Self.withDaemon(["MODELD_COOLDOWN_FAILURES": "100"]) { daemon in
                // Prices per million tokens; each fake reports 7 prompt and 3 completion tokens per reply.
                for (fake, priority, costIn, costOut) in [(a, 1, 1000, 2000), (b, 2, 3000, 4000)] {
                    let added = try await daemon.modelctl([
                        "upstream", "add", fake.name, "--url", fake.url + "/v1", "--models", "gpt-x", "--priority", "\(priority)", "--cost-in",
                        "\(costIn)", "--cost-out", "\(costOut)",
                    ])
                    #expect(added.status == 0, "\(added.stderr)")
                }
                let created = try await daemon.modelctl(["keys", "create", "--name", "app", "--spend-cap", "0.05", "--json"])
                let secret = try #require(try WireJSON.decoder().decode(KeyInfo.self, from: Data(created.stdout.utf8)).key, "\(created.stderr)")
                // a fails before its first byte: b answers, at b's prices.
                a.behave(.status(500))
                #expect(try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x"), key: secret).body.contains("chatcmpl-b"))
                a.behave(.ok)
                for stream in [false, true] {
                    let reply = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x", stream: stream), key: secret)
                    #expect(reply.status == 200 && reply.body.contains("chatcmpl-a"), "\(reply)")
                }
                let shown = try await daemon.modelctl(["usage", "--by", "backend", "--json"])
                let groups = try WireJSON.decoder().decode(UsageReport.self, from: Data(shown.stdout.utf8)).groups
                let byBackend = Dictionary(uniqueKeysWithValues: groups.map { ($0.group, $0) })
                let (onA, onB) = (try #require(byBackend["upstream:a"], "\(groups)"), try #require(byBackend["upstream:b"], "\(groups)"))
                #expect(onA.requests == 2 && onA.promptTokens == 14 && onA.completionTokens == 6 && onA.errors == 0, "\(onA)")
                #expect(onB.requests == 1 && onB.promptTokens == 7 && onB.completionTokens == 3, "\(onB)")
                // (7 x 1000 + 3 x 2000) / 1e6 per reply from a; (7 x 3000 + 3 x 4000) / 1e6 from b.
                #expect(abs(onA.cost - 0.026) < 1e-9 && abs(onB.cost - 0.033) < 1e-9, "\(groups)")
                let metrics = try await runProcess(
                    URL(filePath: "/usr/bin/curl"), ["-s", "http://127.0.0.1:\(daemon.port)/metrics", "-H", "Authorization: Bearer \(secret)"])
                #expect(metrics.stdout.contains(#"modeld_backend_tokens_total{backend="upstream:a",kind="prompt"} 14"#), "\(metrics.stdout)")

                // 0.059 spent this month is over the key's cap of 0.05.
                let refused = try await Self.post(daemon, "/v1/chat/completions", Self.chat("gpt-x"), key: secret)
                #expect(refused.status == 429 && refused.body.contains("spending cap of 0.05 per month (0.059 spent)"), "\(refused)")
                #expect(refused.body.contains("it resets at") && Int(refused.headers["retry-after"] ?? "") ?? 0 > 0, "\(refused)")
                #expect(a.completions.count == 3 && b.completions.count == 1, "the refused request reached no upstream (a: the 500 and two replies)")
            }
        }
    }
}
