import Foundation
import Launchers
import Logging
import ModelStore
import ServiceLifecycle
import Testing
import Transfer

@Suite("Supervisor", .serialized)
struct SupervisorTests {
    @Test("vLLM: exact argv and environment, own session, only fds 0-2, default signals, served on its port; stop leaves no group")
    func startAndStop() async throws {
        let sandbox = try Sandbox()
        // A descriptor without CLOEXEC, as a careless library would leave one: it must not reach the engine.
        let leak = open("/dev/null", O_RDONLY)
        defer { close(leak) }
        try #require(leak >= 3)
        // An ignored signal in the daemon must not stay ignored in the engine.
        signal(SIGUSR2, SIG_IGN)
        let record = sandbox.path("record.json")
        let supervisor = try await sandbox.supervisor(
            sandbox.configuration(environment: [
                "NOTIFY_SOCKET": "@modeld-test", "LISTEN_FDS": "1", "LISTEN_PID": "\(getpid())", "LISTEN_FDNAMES": "http",
                "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "\(getpid())",
            ]))
        let started = try await supervisor.start(
            sandbox.vllmRequest(
                environment: ["FAKE_ENGINE_RECORD": record],
                options: RunOptions(gpus: "1", tensorParallelSize: 2, maxContext: 4096)))
        // `start` answers once the launch is recorded; on a loaded machine the readiness probe may already have
        // seen the engine answer by then.
        #expect([.starting, .ready].contains(started.state))
        #expect(started.name == "tiny")
        let port = try #require(started.port)
        #expect(sandbox.ports.contains(port))
        #expect(started.endpoint == "http://127.0.0.1:\(port)")

        let ready = try await supervisor.waitUntilSettled("tiny", timeout: .seconds(30))
        #expect(ready.state == .ready)
        let pid = try #require(ready.pid)
        let fake = try FakeRecord(path: record)
        #expect(fake.pid == pid)
        #expect(
            fake.argv == [
                fakeEngine, "serve", sandbox.modelDirectory, "--host", "127.0.0.1", "--port", "\(port)",
                "--served-model-name", "tiny", "--tensor-parallel-size", "2", "--max-model-len", "4096",
            ])
        #expect(fake.env["HF_HUB_CACHE"] == sandbox.root.appending(path: "huggingface/hub").path)
        #expect(fake.env["HF_HUB_OFFLINE"] == "1")
        #expect(fake.env["CUDA_VISIBLE_DEVICES"] == "1")
        #expect(fake.env["PATH"] == "/usr/bin:/bin")
        #expect(fake.env.keys.filter { $0 == "NOTIFY_SOCKET" || $0.hasPrefix("LISTEN_") || $0.hasPrefix("WATCHDOG_") }.isEmpty)
        #expect(fake.fds == [0, 1, 2])
        #expect(fake.sigIgn == "0000000000000000")
        #expect(fake.sigBlk == "0000000000000000")
        #expect(fake.pgid == pid && fake.sid == pid)

        let models = try await HTTPTransfer().perform(HTTPRequest(url: "http://127.0.0.1:\(port)/v1/models"))
        #expect(models.status == 200)
        #expect(String(decoding: models.body, as: UTF8.self).contains("\"id\":\"tiny\""))

        let stopped = try await supervisor.stop("tiny")
        #expect(stopped.state == .stopped)
        #expect(stopped.desiredState == .stopped)
        #expect(stopped.pid == nil)
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
        #expect(kill(-pid, 0) == -1 && errno == ESRCH)
        let stored = try #require(try await sandbox.store.run(id: started.runID))
        #expect(stored.state == .stopped && stored.desiredState == .stopped)
        let log = try await logText(supervisor, "tiny")
        #expect(log.contains("fake-engine: vllm serving tiny"))
        #expect(log.contains("SIGTERM received"))
    }

    @Test("SGLang and the built-in engine start with their own command lines", arguments: [EngineKind.sglang, .builtin])
    func otherEngines(_ engine: EngineKind) async throws {
        let sandbox = try Sandbox()
        let record = sandbox.path("record.json")
        let supervisor = try await sandbox.supervisor()
        let spec = LaunchSpec(
            engine: engine, modelPath: sandbox.modelDirectory, servedName: "tiny", options: RunOptions(environment: ["FAKE_ENGINE_RECORD": record]))
        let started = try await supervisor.start(RunRequest(model: "acme/tiny", spec: spec))
        #expect(started.name == "tiny-\(engine.rawValue)")
        let ready = try await supervisor.waitUntilSettled(started.runID, timeout: .seconds(30))
        #expect(ready.state == .ready)
        let port = try #require(ready.port)
        let fake = try FakeRecord(path: record)
        switch engine {
        case .sglang:
            #expect(
                fake.argv == [
                    fakeEngine, "-m", "sglang.launch_server", "--model-path", sandbox.modelDirectory, "--host", "127.0.0.1", "--port", "\(port)",
                    "--served-model-name", "tiny",
                ])
            #expect(fake.env["HF_HUB_OFFLINE"] == "1")
        default:
            #expect(
                fake.argv == [
                    fakeEngine, "engine", "--model", sandbox.modelDirectory, "--host", "127.0.0.1", "--port", "\(port)", "--served-model-name",
                    "tiny",
                ])
        }
        _ = try await supervisor.stop(started.runID)
    }

    @Test("an engine killed with SIGKILL is restarted, with a growing backoff")
    func restartAfterKill() async throws {
        let sandbox = try Sandbox()
        let restart = RestartPolicy(backoffBase: .milliseconds(500), backoffCap: .seconds(10), burstLimit: 5, burstWindow: .seconds(600))
        let supervisor = try await sandbox.supervisor(sandbox.configuration(restart: restart))
        _ = try await supervisor.start(sandbox.vllmRequest())
        let first = try await supervisor.waitUntilSettled("tiny", timeout: .seconds(30))
        let firstPid = try #require(first.pid)
        #expect(kill(firstPid, SIGKILL) == 0)
        let clock = ContinuousClock()
        let killedAt = clock.now
        #expect(await eventually { (try? await supervisor.get("tiny"))?.restarts == 1 })
        #expect(clock.now - killedAt >= .milliseconds(500))
        let second = try await supervisor.waitUntilSettled("tiny", timeout: .seconds(30))
        #expect(second.state == .ready)
        let secondPid = try #require(second.pid)
        #expect(secondPid != firstPid)
        #expect(!isRunning(firstPid))

        #expect(kill(secondPid, SIGKILL) == 0)
        #expect(await eventually { (try? await supervisor.get("tiny"))?.restarts == 2 })
        let third = try await supervisor.waitUntilSettled("tiny", timeout: .seconds(30))
        #expect(third.state == .ready)
        let log = try await logText(supervisor, "tiny")
        #expect(log.contains("the engine exited unexpectedly (killed by signal 9"))
        #expect(log.contains("restarting in 500 ms"))
        #expect(log.contains("restarting in 1 s"))
        _ = try await supervisor.stop("tiny")
    }

    @Test("a crash loop ends failed, with the last log lines as the reason")
    func crashLoop() async throws {
        let sandbox = try Sandbox()
        let starts = sandbox.path("starts")
        let restart = RestartPolicy(backoffBase: .milliseconds(100), backoffCap: .milliseconds(400), burstLimit: 2, burstWindow: .seconds(600))
        let supervisor = try await sandbox.supervisor(sandbox.configuration(restart: restart))
        _ = try await supervisor.start(sandbox.vllmRequest(environment: ["FAKE_ENGINE_CRASH_AFTER": "0.3", "FAKE_ENGINE_STARTS": starts]))
        #expect(await eventually { (try? await supervisor.get("tiny"))?.state == .failed })
        let info = try await supervisor.get("tiny")
        #expect(info.restarts == 2)
        let reason = try #require(info.reason)
        #expect(reason.contains("exit status 3"))
        #expect(reason.contains("restarted 2 times"))
        #expect(reason.contains("fake-engine: crashing on purpose"))
        let startCount = try String(contentsOfFile: starts, encoding: .utf8).split(separator: "\n").count
        #expect(startCount == 3)
        // The monitor records the failure without waiting for the store: its write is in flight or done.
        await sandbox.store.writesFinished()
        let stored = try #require(try await sandbox.store.run(id: info.runID))
        #expect(stored.state == .failed)
        #expect(stored.reason == reason)
        #expect(stored.exitStatus == 3)
    }

    @Test("an engine that never becomes ready fails after its start time-out")
    func startTimeout() async throws {
        let sandbox = try Sandbox()
        let restart = RestartPolicy(backoffBase: .milliseconds(100), backoffCap: .milliseconds(100), burstLimit: 0, burstWindow: .seconds(600))
        let supervisor = try await sandbox.supervisor(sandbox.configuration(restart: restart, startTimeout: .milliseconds(1500), grace: .seconds(1)))
        _ = try await supervisor.start(sandbox.vllmRequest(environment: ["FAKE_ENGINE_HANG_HEALTH": "1"]))
        #expect(await eventually { (try? await supervisor.get("tiny"))?.state == .failed })
        let reason = try #require(try await supervisor.get("tiny").reason)
        #expect(reason.contains("did not become ready within 1.5 s"))
    }

    @Test("an engine whose health check hangs once ready is restarted")
    func livenessFailure() async throws {
        let sandbox = try Sandbox()
        let supervisor = try await sandbox.supervisor(sandbox.configuration(grace: .seconds(1), liveness: .milliseconds(200)))
        _ = try await supervisor.start(sandbox.vllmRequest(environment: ["FAKE_ENGINE_HANG_HEALTH": "after:3"]))
        let first = try await supervisor.waitUntilSettled("tiny", timeout: .seconds(30))
        #expect(first.state == .ready)
        #expect(await eventually(timeout: .seconds(30)) { (try? await supervisor.get("tiny"))?.restarts ?? 0 >= 1 })
        let log = try await logText(supervisor, "tiny")
        #expect(log.contains("liveness probes in a row"))
        _ = try await supervisor.stop("tiny")
    }

    @Test("stop: an engine ignoring SIGTERM is killed after the grace period, and its grandchild with it")
    func stopStubbornEngine() async throws {
        let sandbox = try Sandbox()
        let grandchildFile = sandbox.path("grandchild.pid")
        let supervisor = try await sandbox.supervisor(sandbox.configuration(grace: .seconds(1)))
        _ = try await supervisor.start(
            sandbox.vllmRequest(environment: [
                "FAKE_ENGINE_IGNORE_SIGTERM": "1", "FAKE_ENGINE_GRANDCHILD_PIDFILE": grandchildFile,
            ]))
        let ready = try await supervisor.waitUntilSettled("tiny", timeout: .seconds(30))
        let pid = try #require(ready.pid)
        #expect(await eventually { readPid(grandchildFile) != nil })
        let grandchild = try #require(readPid(grandchildFile))
        #expect(isRunning(grandchild))
        #expect(ProcStat(pid: grandchild)?.processGroup == pid)

        let clock = ContinuousClock()
        let before = clock.now
        let stopped = try await supervisor.stop("tiny")
        #expect(clock.now - before >= .seconds(1))
        #expect(stopped.state == .stopped)
        #expect(stopped.exitStatus == 128 + 9)
        #expect(kill(pid, 0) == -1 && errno == ESRCH)
        #expect(kill(grandchild, 0) == -1 && errno == ESRCH)
        #expect(kill(-pid, 0) == -1 && errno == ESRCH)
    }

    @Test("when the daemon is SIGKILLed its engine dies too; the next daemon cleans the engine's helpers up")
    func noOrphans() async throws {
        let sandbox = try Sandbox()
        let pidFile = sandbox.path("engine.pid")
        let grandchildFile = sandbox.path("grandchild.pid")
        let daemon = Process()
        daemon.executableURL = URL(filePath: fakeEngine)
        daemon.arguments = ["supervise", sandbox.root.path, pidFile]
        daemon.environment = [
            "PATH": "/usr/bin:/bin", "FAKE_SUPERVISE_PORT": "\(sandbox.ports.lowerBound)",
            "FAKE_ENGINE_GRANDCHILD_PIDFILE": grandchildFile,
        ]
        try daemon.run()
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) } }
        #expect(await eventually(timeout: .seconds(40)) { readPid(pidFile) != nil && readPid(grandchildFile) != nil })
        let engine = try #require(readPid(pidFile))
        let grandchild = try #require(readPid(grandchildFile))
        #expect(isRunning(engine))
        #expect(ProcStat(pid: engine)?.parent == daemon.processIdentifier)

        kill(daemon.processIdentifier, SIGKILL)
        #expect(await eventually(timeout: .seconds(10)) { !isRunning(engine) })

        // The engine's own helper is not covered by PDEATHSIG: the next daemon's reconciliation removes it.
        let supervisor = try await sandbox.supervisor()
        let records = try await sandbox.store.runs()
        #expect(records.first?.pid == engine)
        await supervisor.reconcile()
        #expect(!isRunning(grandchild))
        // desired=running: the run is started again by the new daemon.
        let again = try await supervisor.waitUntilSettled("orphan-check", timeout: .seconds(30))
        #expect(again.state == .ready)
        #expect(again.pid != engine)
        _ = try await supervisor.stop("orphan-check")
    }

    @Test("reconcile stops a survivor whose pid and start time match, and leaves a reused pid alone")
    func reconcileSurvivor() async throws {
        let sandbox = try Sandbox()
        func spawnFake(port: Int) async throws -> EngineProcess {
            let command = LaunchCommand(
                executablePath: fakeEngine,
                arguments: [fakeEngine, "serve", sandbox.modelDirectory, "--host", "127.0.0.1", "--port", "\(port)", "--served-model-name", "tiny"],
                environment: ["PATH": "/usr/bin:/bin"])
            let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
            defer { close(null) }
            return EngineProcess(childPid: try await Spawner.shared.spawn(command, outputDescriptor: null))
        }
        let port = sandbox.ports.upperBound
        let survivor = try await spawnFake(port: port)
        let stranger = try await spawnFake(port: port - 1)
        defer { kill(-stranger.pid, SIGKILL) }
        // Both serve (their SIGTERM handlers are installed) before the new daemon looks at them.
        for probePort in [port, port - 1] {
            let probe = try HealthProbe(port: probePort, path: "/health", timeout: .seconds(2))
            #expect(await eventually { await probe.check() })
        }
        let spec = String(
            decoding: try JSONEncoder().encode(LaunchSpec(engine: .vllm, modelPath: sandbox.modelDirectory, servedName: "tiny")), as: UTF8.self)
        try await sandbox.store.saveRun(
            RunRecord(
                id: "rsurvivor", name: "survivor", model: "acme/tiny", engine: "vllm", options: spec, pid: survivor.pid,
                processStartTime: survivor.startTime, port: port, state: .ready, desiredState: .stopped))
        // Same pid, other start time: a different process now holds the pid.
        try await sandbox.store.saveRun(
            RunRecord(
                id: "rstranger", name: "stranger", model: "acme/tiny", engine: "vllm", options: spec, pid: stranger.pid,
                processStartTime: (stranger.startTime ?? 0) - 1, port: port, state: .ready, desiredState: .stopped))

        let supervisor = try await sandbox.supervisor()
        await supervisor.reconcile()
        // The fake exits 0 from its SIGTERM handler: it was asked to stop, not killed.
        let survivorStatus = await survivor.waitForExit(timeout: .seconds(10))
        #expect(survivorStatus == .exited(0))
        #expect(stranger.exitStatus == nil)
        #expect(isRunning(stranger.pid))
        let survivorRun = try await supervisor.get("survivor")
        #expect(survivorRun.state == .stopped && survivorRun.pid == nil)
        #expect(try await supervisor.get("stranger").state == .stopped)
        #expect(try await sandbox.store.run(id: "rsurvivor")?.pid == nil)
    }

    @Test("runs persist: after shutdown a new supervisor starts desired=running runs again, and not stopped ones")
    func desiredStatePersists() async throws {
        let sandbox = try Sandbox()
        let first = try await sandbox.supervisor()
        let kept = try await first.start(sandbox.vllmRequest(name: "kept"))
        let parked = try await first.start(sandbox.vllmRequest(name: "parked"))
        #expect(try await first.waitUntilSettled("kept", timeout: .seconds(30)).state == .ready)
        #expect(try await first.waitUntilSettled("parked", timeout: .seconds(30)).state == .ready)
        _ = try await first.stop("parked")
        let oldPid = try #require(try await first.get("kept").pid)
        await first.shutdown()
        #expect(!isRunning(oldPid))
        let afterShutdown = try #require(try await sandbox.store.run(id: kept.runID))
        #expect(afterShutdown.state == .stopped && afterShutdown.desiredState == .running)

        let second = try await sandbox.supervisor()
        #expect(await second.list().map(\.name) == ["kept", "parked"])
        await second.reconcile()
        let again = try await second.waitUntilSettled("kept", timeout: .seconds(30))
        #expect(again.state == .ready)
        #expect(again.pid != nil && again.pid != oldPid)
        #expect(try await second.get(parked.runID).state == .stopped)
        await second.shutdown()
    }

    @Test("a busy port in the range is skipped")
    func busyPort() async throws {
        let sandbox = try Sandbox()
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(sandbox.ports.lowerBound).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(listener, 1) == 0)
        let supervisor = try await sandbox.supervisor()
        let first = try await supervisor.start(sandbox.vllmRequest(name: "a"))
        let second = try await supervisor.start(sandbox.vllmRequest(name: "b"))
        #expect(first.port == sandbox.ports.lowerBound + 1)
        #expect(second.port == sandbox.ports.lowerBound + 2)
        #expect(try await supervisor.waitUntilSettled("a", timeout: .seconds(30)).state == .ready)
        await supervisor.shutdown()
    }

    @Test("logs rotate at the size limit; tail reads across files; follow streams new lines")
    func logs() async throws {
        let sandbox = try Sandbox()
        let supervisor = try await sandbox.supervisor(sandbox.configuration(logMaxBytes: 4096))
        let info = try await supervisor.start(sandbox.vllmRequest(environment: ["FAKE_ENGINE_LOG_BYTES": "30000"]))
        #expect(try await supervisor.waitUntilSettled("tiny", timeout: .seconds(30)).state == .ready)
        let file = try await supervisor.logFile("tiny")
        #expect(file.path == sandbox.dataDirectory.logs.appending(path: "\(info.runID).log").path)
        let manager = FileManager.default
        #expect(manager.fileExists(atPath: file.path + ".1"))
        #expect(manager.fileExists(atPath: file.path + ".3"))
        #expect(!manager.fileExists(atPath: file.path + ".4"))
        for suffix in ["", ".1", ".2", ".3"] {
            let size = try #require(try manager.attributesOfItem(atPath: file.path + suffix)[.size] as? Int)
            #expect(size <= 4096)
        }
        let tail = try await supervisor.logs("tiny", tail: 5)
        #expect(tail.count == 5)
        #expect(tail.last?.contains("ready") == true)

        let stream = try await supervisor.followLogs("tiny", tail: 1)
        let follower = Task {
            var lines: [String] = []
            for await line in stream {
                lines.append(line)
                if line.contains("stopping: SIGTERM to process group") { break }
            }
            return lines
        }
        _ = try await supervisor.stop("tiny")
        // A follower that never sees the line must not hang the suite.
        let watchdog = Task {
            try await Task.sleep(for: .seconds(10))
            follower.cancel()
        }
        let followed = await follower.value
        watchdog.cancel()
        #expect(followed.first?.contains("ready") == true)
        #expect(followed.last?.contains("stopping: SIGTERM to process group") == true)
    }

    @Test("a missing engine or an unexecutable file is an error, not a silent exit")
    func launchErrors() async throws {
        let sandbox = try Sandbox()
        var configuration = sandbox.configuration()
        configuration.engines[.vllm] = EngineSettings(command: ["vllm"], startTimeout: .seconds(5), stopGrace: .seconds(1))
        let supervisor = try await sandbox.supervisor(configuration)
        let noFiles = try await #require(throws: LaunchError.self) {
            try await supervisor.start(
                RunRequest(model: "acme/gone", spec: LaunchSpec(engine: .builtin, modelPath: sandbox.path("gone"), servedName: "gone")))
        }
        #expect(noFiles.description == "the model directory \(sandbox.path("gone")) does not exist: pull the model again")
        let missing = try await #require(throws: LaunchError.self) { try await supervisor.start(sandbox.vllmRequest()) }
        #expect(missing.description == "vllm not found on PATH: install it with `pip install vllm` or set the vLLM executable in the configuration")
        #expect(await supervisor.list().isEmpty)

        let bogus = sandbox.path("not-a-program")
        FileManager.default.createFile(atPath: bogus, contents: Data([0x00, 0x01, 0x02, 0x03]), attributes: [.posixPermissions: 0o755])
        configuration.engines[.vllm] = EngineSettings(command: [bogus], startTimeout: .seconds(5), stopGrace: .seconds(1))
        let second = try await sandbox.supervisor(configuration)
        let execFailure = try await #require(throws: LaunchError.self) { try await second.start(sandbox.vllmRequest(name: "bogus")) }
        #expect(execFailure.code == .spawnFailed)
        #expect(execFailure.description.contains("execve failed (Exec format error)"))
        #expect(try await second.get("bogus").state == .failed)
    }

    @Test("Ollama: one shared ollama serve; models enter by pull and by GGUF upload; it stops with the last run")
    func ollama() async throws {
        let sandbox = try Sandbox()
        let record = sandbox.path("ollama.json")
        let supervisor = try await sandbox.supervisor(sandbox.configuration(environment: ["FAKE_ENGINE_RECORD": record, "NOTIFY_SOCKET": "/run/x"]))
        let pulled = try await supervisor.start(
            RunRequest(
                name: "qwen", model: "qwen2.5:0.5b",
                spec: LaunchSpec(engine: .ollama, servedName: "qwen2.5:0.5b", ollama: .pull(name: "qwen2.5:0.5b"))))
        let gguf = sandbox.path("tiny.gguf")
        FileManager.default.createFile(atPath: gguf, contents: Data("GGUF fake weights".utf8))
        let created = try await supervisor.start(
            RunRequest(
                name: "tiny", model: "acme/tiny-GGUF",
                spec: LaunchSpec(engine: .ollama, servedName: "tiny:latest", ollama: .gguf(path: gguf, name: "tiny:latest", sha256: nil))))
        let first = try await supervisor.waitUntilSettled("qwen", timeout: .seconds(30))
        let second = try await supervisor.waitUntilSettled("tiny", timeout: .seconds(30))
        #expect(first.state == .ready && second.state == .ready)
        #expect(first.pid != nil && first.pid == second.pid)
        let port = try #require(first.port)
        #expect(pulled.port == port && created.port == port)

        let fake = try FakeRecord(path: record)
        #expect(fake.argv == [fakeEngine, "serve"])
        #expect(fake.env["OLLAMA_HOST"] == "127.0.0.1:\(port)")
        #expect(fake.env["OLLAMA_MODELS"] == sandbox.root.appending(path: "ollama").path)
        #expect(fake.env["NOTIFY_SOCKET"] == nil)
        #expect(fake.fds == [0, 1, 2])
        let tags = try await HTTPTransfer().perform(HTTPRequest(url: "http://127.0.0.1:\(port)/api/tags"))
        let text = String(decoding: tags.body, as: UTF8.self)
        #expect(text.contains("qwen2.5:0.5b") && text.contains("tiny:latest"))
        #expect(try await logText(supervisor, "qwen").contains("ollama: success"))

        _ = try await supervisor.start(
            RunRequest(
                name: "gone", model: "missing:1b", spec: LaunchSpec(engine: .ollama, servedName: "missing:1b", ollama: .pull(name: "missing:1b"))))
        let gone = try await supervisor.waitUntilSettled("gone", timeout: .seconds(30))
        #expect(gone.state == .failed)
        #expect(gone.reason?.contains("file does not exist") == true)

        let host = try #require(first.pid)
        _ = try await supervisor.stop("qwen")
        #expect(isRunning(host))
        _ = try await supervisor.stop("tiny")
        #expect(!isRunning(host))
        #expect(kill(-host, 0) == -1 && errno == ESRCH)
    }

    @Test("Ollama: when the shared server dies it is restarted and its runs' models are entered again")
    func ollamaRestart() async throws {
        let sandbox = try Sandbox()
        let supervisor = try await sandbox.supervisor()
        _ = try await supervisor.start(
            RunRequest(
                name: "qwen", model: "qwen2.5:0.5b",
                spec: LaunchSpec(engine: .ollama, servedName: "qwen2.5:0.5b", ollama: .pull(name: "qwen2.5:0.5b"))))
        let first = try await supervisor.waitUntilSettled("qwen", timeout: .seconds(30))
        #expect(first.state == .ready)
        let host = try #require(first.pid)
        #expect(kill(host, SIGKILL) == 0)
        #expect(await eventually { (try? await supervisor.get("qwen"))?.restarts == 1 })
        #expect(
            await eventually {
                guard let info = try? await supervisor.get("qwen") else { return false }
                return info.state == .ready && info.pid != nil && info.pid != host
            })
        let port = try #require(try await supervisor.get("qwen").port)
        // A new server knows nothing of the model until modeld enters it again.
        let tags = try await HTTPTransfer().perform(HTTPRequest(url: "http://127.0.0.1:\(port)/api/tags"))
        #expect(String(decoding: tags.body, as: UTF8.self).contains("qwen2.5:0.5b"))
        await supervisor.shutdown()
        #expect(try await supervisor.get("qwen").state == .stopped)
    }

    @Test("as a Service: reconciles on start, stops every engine on graceful shutdown")
    func service() async throws {
        let sandbox = try Sandbox()
        let supervisor = try await sandbox.supervisor()
        let info = try await supervisor.start(sandbox.vllmRequest())
        let ready = try await supervisor.waitUntilSettled(info.runID, timeout: .seconds(30))
        let pid = try #require(ready.pid)
        let group = ServiceGroup(configuration: .init(services: [SupervisorService(supervisor: supervisor)], logger: Logger(label: "test")))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(500))
            // Reconciliation leaves the runs this supervisor already manages alone.
            let during = try await supervisor.get(info.runID)
            #expect(during.pid == pid && during.restarts == 0 && during.state == .ready)
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(!isRunning(pid))
        let after = try await supervisor.get(info.runID)
        #expect(after.state == .stopped)
        #expect(after.desiredState == .running)
    }

    @Test("SGLang missing from python3 fails at once, saying how to install it")
    func pythonModuleMissing() async throws {
        let sandbox = try Sandbox()
        let supervisor = try await sandbox.supervisor()
        let spec = LaunchSpec(
            engine: .sglang, modelPath: sandbox.modelDirectory, servedName: "tiny",
            options: RunOptions(environment: ["FAKE_ENGINE_NO_MODULE": "sglang"]))
        _ = try await supervisor.start(RunRequest(name: "sg", model: "acme/tiny", spec: spec))
        #expect(await eventually { (try? await supervisor.get("sg"))?.state == .failed })
        let info = try await supervisor.get("sg")
        #expect(info.restarts == 0)
        #expect(
            info.reason
                == "SGLang is not installed for this Python (/usr/bin/python3: No module named sglang): install it with `pip install \"sglang[all]\"` or set the SGLang executable in the configuration"
        )
    }

    @Test("an engine refusing its command line fails at once with its own error, not restarted")
    func commandLineRefused() async throws {
        let sandbox = try Sandbox()
        let supervisor = try await sandbox.supervisor()
        let spec = LaunchSpec(
            engine: .vllm, modelPath: sandbox.modelDirectory, servedName: "tiny", options: RunOptions(extraArguments: ["--unknown-flag"]))
        _ = try await supervisor.start(RunRequest(name: "refused", model: "acme/tiny", spec: spec))
        #expect(await eventually { (try? await supervisor.get("refused"))?.state == .failed })
        let info = try await supervisor.get("refused")
        #expect(info.restarts == 0)
        let reason = try #require(info.reason)
        #expect(reason.hasPrefix("vLLM refused its command line (fake-engine: error: unrecognized arguments: --unknown-flag); the engine exited"))
    }

    @Test("a multi-node worker: headless, no port, ready by its process alone, restarted after SIGKILL, stopped with its group")
    func multiNodeWorker() async throws {
        let sandbox = try Sandbox()
        var configuration = sandbox.configuration()
        configuration.workerSettle = .seconds(2)
        let supervisor = try await sandbox.supervisor(configuration)
        let record = sandbox.path("record.json")
        let node = MultiNode(nodes: 2, rank: 1, masterAddress: "10.0.0.1", masterPort: 29500)
        let options = RunOptions(gpus: "0,1", tensorParallelSize: 2, pipelineParallelSize: 2, multiNode: node)
        let started = try await supervisor.start(sandbox.vllmRequest(name: "worker", environment: ["FAKE_ENGINE_RECORD": record], options: options))
        #expect(started.state == .starting && started.port == nil && started.endpoint == nil)

        let ready = try await supervisor.waitUntilSettled("worker", timeout: .seconds(30))
        #expect(ready.state == .ready && ready.port == nil)
        let pid = try #require(ready.pid)
        let fake = try FakeRecord(path: record)
        #expect(
            fake.argv == [
                fakeEngine, "serve", sandbox.modelDirectory, "--tensor-parallel-size", "2", "--pipeline-parallel-size", "2", "--nnodes", "2",
                "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port", "29500", "--headless",
            ])
        #expect(fake.env["CUDA_VISIBLE_DEVICES"] == "0,1" && fake.env["HF_HUB_OFFLINE"] == "1")
        #expect(fake.pgid == pid && fake.sid == pid)
        // Nothing to route requests to: the gateway sees no ready run of the model.
        #expect(RunScheduler.readyRuns("tiny", in: supervisor.snapshot).isEmpty)
        #expect(try await logText(supervisor, "worker").contains("ready: the worker has run for 2 s"))

        #expect(kill(pid, SIGKILL) == 0)
        #expect(await eventually { (try? await supervisor.get("worker"))?.restarts == 1 })
        let again = try await supervisor.waitUntilSettled("worker", timeout: .seconds(30))
        #expect(again.state == .ready)
        let second = try #require(again.pid)
        #expect(second != pid && !isRunning(pid))
        #expect(try await logText(supervisor, "worker").contains("the engine exited unexpectedly (killed by signal 9"))

        let stopped = try await supervisor.stop("worker")
        #expect(stopped.state == .stopped && stopped.pid == nil)
        #expect(!ProcessGroup(id: second).hasRunningMembers)
    }

    @Test("a multi-node worker refusing its command line fails at once with vLLM's own error")
    func multiNodeWorkerRefused() async throws {
        let sandbox = try Sandbox()
        var configuration = sandbox.configuration()
        configuration.workerSettle = .seconds(20)
        let supervisor = try await sandbox.supervisor(configuration)
        let node = MultiNode(nodes: 2, rank: 1, masterAddress: "10.0.0.1", masterPort: 29500)
        _ = try await supervisor.start(sandbox.vllmRequest(name: "worker", options: RunOptions(multiNode: node, extraArguments: ["--unknown-flag"])))
        #expect(await eventually { (try? await supervisor.get("worker"))?.state == .failed })
        let info = try await supervisor.get("worker")
        #expect(info.restarts == 0 && info.pid == nil)
        let reason = try #require(info.reason)
        #expect(
            reason.hasPrefix(
                "vLLM refused its command line (fake-engine: error: unrecognized arguments: --unknown-flag); the engine exited while starting"))
    }
}
