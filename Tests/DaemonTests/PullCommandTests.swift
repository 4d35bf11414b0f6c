import FakeHub
import Foundation
import ModeldAPI
import ModeldClient
import Testing

/// A real `modeld` process on a temporary data directory, with its environment, stopped at the end.
final class DaemonProcess: @unchecked Sendable {
    let root: URL
    let launch: ModeldLaunch
    let environment: [String: String]
    var port: Int { launch.port }
    var process: Process { launch.process }
    /// What the daemon wrote to stderr so far, for failure messages.
    var log: String { launch.log }

    init(extraEnvironment: [String: String] = [:]) async throws {
        root = FileManager.default.temporaryDirectory.appending(path: "modeld-proc-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        environment = ["HOME": root.path, "MODELD_DATA_DIR": root.path, "MODELD_ENGINE_PORTS": enginePortBlock()].merging(extraEnvironment) { $1 }
        launch = try await ModeldLaunch(environment: environment)
        let client = try ModeldClient(endpoint: DaemonEndpoint(baseURL: "http://127.0.0.1:\(launch.port)"))
        for _ in 0..<200 {
            if (try? await client.health()) != nil { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw ClientError(kind: .unreachable, message: "modeld did not answer /health; its log:\n\(launch.log)")
    }

    /// Runs modelctl against this daemon's control socket.
    func modelctl(_ arguments: [String], input: String? = nil) async throws -> (status: Int32, stdout: String, stderr: String) {
        try await runProcess(
            productsDirectory.appending(path: "modelctl"), arguments,
            environment: ["HOME": root.path, "MODELD_CONTROL_SOCKET": root.appending(path: "modeld.sock").path], input: input)
    }

    func stop() async throws {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            try await waitForExit(process)
        }
        try? FileManager.default.removeItem(at: root)
    }
}

@Suite("modelctl pull, list, verify, rm against a fake hub")
struct PullCommandTests {
    @Test("pull to ready, list, verify, detect damage, remove; errors are one line with a non-zero exit")
    func endToEnd() async throws {
        try await FakeHub.withRunning { hub in
            let weights = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            hub.addRepo(
                "acme/tiny",
                commits: [
                    FakeCommit(files: [FakeFile("config.json", #"{"model_type": "qwen2"}"#), FakeFile("model.safetensors", weights, lfs: true)])
                ])
            hub.addRepo("acme/gated", commits: [FakeCommit(files: [FakeFile("config.json", "{}")])], gated: true)
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                let pulled = try await daemon.modelctl(["pull", "acme/tiny"])
                #expect(pulled.status == 0, "stderr: \(pulled.stderr)")
                #expect(pulled.stdout.contains("ready acme/tiny@"), "\(pulled.stdout)")

                let listed = try await daemon.modelctl(["list", "--json"])
                let versions = try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(listed.stdout.utf8))
                let version = try #require(versions.first)
                #expect(versions.count == 1 && version.repo == "acme/tiny" && version.state == "ready")
                #expect(version.sizeBytes == Int64(weights.count + 23))
                let snapshot = try #require(version.path)
                #expect(try Data(contentsOf: URL(filePath: snapshot).appending(path: "model.safetensors")) == weights)

                // JSON events: every line decodes, the last says done.
                let again = try await daemon.modelctl(["pull", "acme/tiny", "--json"])
                #expect(again.status == 0)
                let events = try again.stdout.split(separator: "\n").map { try WireJSON.decoder().decode(PullEvent.self, from: Data($0.utf8)) }
                #expect(events.last?.event == .done)
                #expect(events.last?.alreadyPresent == true)

                #expect(try await daemon.modelctl(["verify", "acme/tiny"]).status == 0)
                // Flip one byte of the blob behind the snapshot: verify must notice and exit 1.
                let blob = URL(filePath: snapshot).appending(path: "model.safetensors").resolvingSymlinksInPath()
                var damaged = try Data(contentsOf: blob)
                damaged[1000] ^= 0xFF
                try damaged.write(to: blob)
                let verified = try await daemon.modelctl(["verify", "acme/tiny"])
                #expect(verified.status == 1)
                #expect(verified.stdout.contains("DAMAGED") && verified.stdout.contains("model.safetensors"))
                let afterDamage = try await daemon.modelctl(["list", "--json"])
                #expect(try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(afterDamage.stdout.utf8)).first?.state == "damaged")

                let removed = try await daemon.modelctl(["rm", "acme/tiny"])
                #expect(removed.status == 0 && removed.stdout.contains("removed acme/tiny@"))
                #expect(!FileManager.default.fileExists(atPath: snapshot))
                let empty = try await daemon.modelctl(["list", "--json"])
                #expect(try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(empty.stdout.utf8)).isEmpty)

                // A gated repository: one line saying what to do, exit 1, nothing ready.
                let gated = try await daemon.modelctl(["pull", "acme/gated"])
                #expect(gated.status == 1)
                let message = gated.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(!message.contains("\n"), "\(message)")
                #expect(message.contains("HF_TOKEN") && message.contains("\(hub.endpoint)/acme/gated"), "\(message)")
                let unknown = try await daemon.modelctl(["pull", "nosuch:1b"])
                #expect(unknown.status == 1 && unknown.stderr.contains("not in the catalog"))
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }
}

@Suite("modelctl pull from a mirror behind a private CA")
struct PrivateCAPullTests {
    @Test("modeld trusts CURL_CA_BUNDLE for the mirror and its CDN; a missing --ca-bundle stops start-up with one line")
    func mirrorWithPrivateCA() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-ca-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let certificates = try await TestCertificates.generate(in: root)

        let missing = root.appending(path: "missing.pem").path
        let refused = try await runProcess(
            productsDirectory.appending(path: "modeld"),
            ["--ca-bundle", missing, "--data-dir", root.appending(path: "data").path, "--listen", "127.0.0.1:0"],
            environment: ["HOME": root.path, "PATH": "/usr/bin:/bin"])
        #expect(refused.status == 1)
        let lines = refused.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("configuration ca_bundle: file \(missing) does not exist"), "\(refused.stderr)")

        try await FakeHub.withRunning { hub in
            hub.addRepo(
                "acme/tiny", commits: [FakeCommit(files: [FakeFile("config.json", "{}"), FakeFile("model.safetensors", Data(count: 100_000))])])
            try await TLSFront.withRunning(certificates: certificates, backends: [hub.hubPort, hub.cdnPort]) { ports in
                hub.setPublicOrigins(hub: "https://localhost:\(ports[0])", cdn: "https://127.0.0.1:\(ports[1])")
                let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint, "CURL_CA_BUNDLE": certificates.caBundle])
                do {
                    #expect(daemon.log.contains("ca_bundle=\(certificates.caBundle) (from CURL_CA_BUNDLE)"), "\(daemon.log)")
                    let pulled = try await daemon.modelctl(["pull", "acme/tiny"])
                    #expect(pulled.status == 0, "stderr: \(pulled.stderr)")
                    #expect(try await daemon.modelctl(["verify", "acme/tiny"]).status == 0)
                    #expect(hub.requests.contains { $0.origin == .cdn })
                } catch {
                    try await daemon.stop()
                    throw error
                }
                try await daemon.stop()
            }
        }
    }
}

@Suite("modelctl start, ps, logs, stop with a fake engine")
struct RunCommandTests {
    @Test("a pulled model starts on the vLLM contract, becomes ready, logs, stops; SIGTERM to modeld stops its engine")
    func startStopAndShutdown() async throws {
        let fakeEngine = productsDirectory.appending(path: "fake-engine").path
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [FakeCommit(files: [FakeFile("config.json", "{}")])])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint, "MODELD_VLLM_COMMAND": fakeEngine])
            do {
                #expect(try await daemon.modelctl(["pull", "acme/tiny"]).status == 0)
                let notPulled = try await daemon.modelctl(["start", "acme/other", "--engine", "vllm"])
                #expect(notPulled.status == 1 && notPulled.stderr.contains("modelctl pull acme/other"), "\(notPulled.stderr)")

                let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "tiny", "--wait", "--json"])
                #expect(started.status == 0, "\(started.stderr)")
                let run = try WireJSON.decoder().decode(RunSummary.self, from: Data(started.stdout.utf8))
                #expect(run.state == "ready" && run.engine == "vllm" && run.name == "tiny")
                let pid = try #require(run.pid)
                #expect(kill(pid, 0) == 0)
                let endpoint = try #require(run.endpoint)
                #expect(endpoint.hasPrefix("http://127.0.0.1:"))

                let listed = try await daemon.modelctl(["ps", "--json"])
                let runs = try WireJSON.decoder().decode([RunSummary].self, from: Data(listed.stdout.utf8))
                #expect(runs.map(\.name) == ["tiny"])
                let table = try await daemon.modelctl(["ps"])
                #expect(table.stdout.contains("RUN_ID") && table.stdout.contains("tiny") && table.stdout.contains("ready"))
                #expect(try await daemon.modelctl(["logs", "tiny"]).status == 0)

                let stopped = try await daemon.modelctl(["stop", "tiny", "--json"])
                #expect(try WireJSON.decoder().decode(RunSummary.self, from: Data(stopped.stdout.utf8)).state == "stopped")
                #expect(kill(pid, 0) == -1 && errno == ESRCH)
                #expect(try await daemon.modelctl(["stop", "nosuch"]).status == 1)

                // Start again, then SIGTERM the daemon: the engine must be gone when modeld has exited.
                let again = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "tiny2", "--wait", "--json"])
                let second = try WireJSON.decoder().decode(RunSummary.self, from: Data(again.stdout.utf8))
                let secondPid = try #require(second.pid)
                let clock = ContinuousClock()
                let began = clock.now
                try await daemon.stop()
                #expect(clock.now - began < .seconds(30))
                #expect(daemon.process.terminationStatus == 0)
                #expect(kill(secondPid, 0) == -1 && errno == ESRCH, "engine \(secondPid) outlived the daemon")
            } catch {
                try await daemon.stop()
                throw error
            }
        }
    }
}

@Suite("No orphans")
struct NoOrphanTests {
    @Test("when modeld is SIGKILLed its engines die too, and the next modeld restarts the run it should run")
    func daemonKilled() async throws {
        let fakeEngine = productsDirectory.appending(path: "fake-engine").path
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [FakeCommit(files: [FakeFile("config.json", "{}")])])
            let environment = ["HF_ENDPOINT": hub.endpoint, "MODELD_VLLM_COMMAND": fakeEngine]
            let daemon = try await DaemonProcess(extraEnvironment: environment)
            #expect(try await daemon.modelctl(["pull", "acme/tiny"]).status == 0)
            let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--name", "tiny", "--wait", "--json"])
            let pid = try #require(try WireJSON.decoder().decode(RunSummary.self, from: Data(started.stdout.utf8)).pid)
            kill(daemon.process.processIdentifier, SIGKILL)
            try await waitForExit(daemon.process)
            // Dead means gone or a zombie: whoever inherits the orphan (PID 1, or a subreaper such as this test
            // process once a supervisor ran in it) may not have reaped it yet.
            var gone = false
            for _ in 0..<100 where !gone {
                gone = !isAlive(pid)
                if !gone { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(gone, "engine \(pid) outlived the SIGKILLed daemon")

            // A new daemon on the same data directory brings the run back (desired state: running).
            let next = try await ModeldLaunch(environment: daemon.environment).process
            defer { if next.isRunning { kill(next.processIdentifier, SIGTERM) } }
            var back: RunSummary?
            for _ in 0..<200 where back == nil {
                if let listed = try? await daemon.modelctl(["ps", "--json"]), listed.status == 0,
                    let runs = try? WireJSON.decoder().decode([RunSummary].self, from: Data(listed.stdout.utf8)),
                    let run = runs.first(where: { $0.name == "tiny" && $0.state == "ready" })
                {
                    back = run
                } else {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(back != nil && back?.pid != pid, "the run did not come back: \(String(describing: back))")
            kill(next.processIdentifier, SIGTERM)
            try await waitForExit(next)
            try await daemon.stop()
        }
    }
}

@Suite("The built-in engine under the supervisor")
struct BuiltinRunTests {
    @Test("pull a tiny Qwen2 model, start it on the built-in engine, and chat with it through its endpoint")
    func pullStartChat() async throws {
        let files = try TinyQwen2.hubFiles()
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/qwen2-tiny", commits: [FakeCommit(files: files)])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                let pulled = try await daemon.modelctl(["pull", "acme/qwen2-tiny"])
                #expect(pulled.status == 0, "\(pulled.stderr)\nmodeld log:\n\(daemon.log)")
                let started = try await daemon.modelctl(["start", "acme/qwen2-tiny", "--engine", "builtin", "--name", "tiny", "--wait", "--json"])
                #expect(started.status == 0, "\(started.stderr)\nmodeld log:\n\(daemon.log)")
                let run = try WireJSON.decoder().decode(RunSummary.self, from: Data(started.stdout.utf8))
                #expect(run.state == "ready")
                let endpoint = try #require(run.endpoint)
                let body =
                    #"{"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4, "ignore_eos": true, "temperature": 0}"#
                let reply = try await runProcess(
                    URL(filePath: "/usr/bin/curl"), ["-s", "-H", "Content-Type: application/json", "-d", body, "\(endpoint)/v1/chat/completions"])
                let object = try JSONSerialization.jsonObject(with: Data(reply.stdout.utf8)) as? [String: Any]
                #expect((object?["usage"] as? [String: Int])?["completion_tokens"] == 4, "\(reply.stdout)")

                // modelctl chat: two piped turns against the ready run, each reply a JSON line with real usage.
                let chat = try await daemon.modelctl(["chat", "tiny", "--json", "--max-tokens", "3"], input: "Hello\n/clear\nHow are you?\n")
                #expect(chat.status == 0, "\(chat.stderr)")
                let replies = chat.stdout.split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }
                #expect(replies.count == 2, "\(chat.stdout)")
                for reply in replies {
                    let usage = reply["usage"] as? [String: Int]
                    #expect((usage?["prompt_tokens"] ?? 0) > 0)
                    #expect(["stop", "length"].contains(reply["finish_reason"] as? String ?? ""))
                }
                // The real openai client through the daemon's gateway: listing, plain and streamed chat, 404.
                do {
                    let script = """
                        import sys, openai
                        client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
                        assert "tiny" in [m.id for m in client.models.list()]
                        ask = dict(model="tiny", messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0,
                                   extra_body={"ignore_eos": True})
                        reply = client.chat.completions.create(**ask)
                        assert reply.usage.completion_tokens == 5, reply.usage
                        assert reply.choices[0].finish_reason == "length"
                        chunks = list(client.chat.completions.create(stream=True, **ask))
                        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                        assert streamed == reply.choices[0].message.content, (streamed, reply.choices[0].message.content)
                        try:
                            client.chat.completions.create(model="nosuch", messages=[{"role": "user", "content": "x"}])
                            raise SystemExit("expected a 404")
                        except openai.NotFoundError as error:
                            assert "modelctl start nosuch" in str(error)
                        print("ok", len(chunks))
                        """
                    let result = try await runProcess(
                        URL(filePath: "/usr/bin/env"), ["python3", "-c", script, "http://127.0.0.1:\(daemon.port)"])
                    #expect(result.status == 0 && result.stdout.hasPrefix("ok"), "\(result.stdout)\(result.stderr)")
                }
                #expect(try await daemon.modelctl(["stop", "tiny"]).status == 0)

                // On demand: a request for the pulled model by its repository id starts it on its default engine.
                let onDemand = """
                    import sys, openai
                    client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
                    reply = client.completions.create(model="acme/qwen2-tiny", prompt="Hello", max_tokens=3, extra_body={"ignore_eos": True})
                    assert reply.usage.completion_tokens == 3, reply.usage
                    print("ok")
                    """
                let demanded = try await runProcess(URL(filePath: "/usr/bin/env"), ["python3", "-c", onDemand, "http://127.0.0.1:\(daemon.port)"])
                #expect(demanded.status == 0 && demanded.stdout.hasPrefix("ok"), "\(demanded.stdout)\(demanded.stderr)")
                let runs = try WireJSON.decoder().decode([RunSummary].self, from: Data(try await daemon.modelctl(["ps", "--json"]).stdout.utf8))
                #expect(runs.contains { $0.model == "acme/qwen2-tiny" && $0.state == "ready" && $0.engine == "builtin" }, "\(runs)")
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }
}

extension BuiltinRunTests {
    @Test("an on-demand run unloads after its keep-alive, and the next request loads it again")
    func onDemandKeepAlive() async throws {
        let files = try TinyQwen2.hubFiles()
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/qwen2-tiny", commits: [FakeCommit(files: files)])
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint, "MODELD_ON_DEMAND_KEEP_ALIVE": "2s"])
            do {
                let pulled = try await daemon.modelctl(["pull", "acme/qwen2-tiny"])
                #expect(pulled.status == 0, "\(pulled.stderr)")
                let body = #"{"model": "acme/qwen2-tiny", "prompt": "Hello", "max_tokens": 2, "ignore_eos": true}"#
                let ask = {
                    try await runProcess(
                        URL(filePath: "/usr/bin/curl"),
                        ["-s", "-H", "Content-Type: application/json", "-d", body, "http://127.0.0.1:\(daemon.port)/v1/completions"])
                }
                let first = try await ask()
                #expect(first.stdout.contains(#""completion_tokens":2"#), "\(first.stdout)\n\(daemon.log)")
                let runs = try WireJSON.decoder().decode([RunSummary].self, from: Data(try await daemon.modelctl(["ps", "--json"]).stdout.utf8))
                let run = try #require(runs.first { $0.model == "acme/qwen2-tiny" })
                #expect(run.onDemand && run.keepAlive == 2 && run.state == "ready" && run.lastUsedAt != nil, "\(run)")
                let pid = try #require(run.pid)

                // Idle for its keep-alive: unloaded (the engine exits, the run is forgotten).
                var unloaded = false
                for _ in 0..<100 where !unloaded {
                    try await Task.sleep(for: .milliseconds(100))
                    let listed = try WireJSON.decoder().decode(
                        [RunSummary].self, from: Data(try await daemon.modelctl(["ps", "--json"]).stdout.utf8))
                    unloaded = !listed.contains { $0.runID == run.runID } && !isAlive(pid)
                }
                #expect(unloaded, "the idle on-demand run was not unloaded\n\(daemon.log)")
                #expect(daemon.log.contains("run unloaded"))

                // The next request loads it again.
                let second = try await ask()
                #expect(second.stdout.contains(#""completion_tokens":2"#), "\(second.stdout)")
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }
}

/// Whether a process exists and is not a zombie.
func isAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return false }
    // Field 3, after "pid (comm) ", is the state.
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}
