import Foundation
import ModelStore
import Transfer

/// Ollama runs share one `ollama serve` child: a run is a model entered into it (pulled, or created from a
/// GGUF), and its pid and port are the server's. The server starts with the first Ollama run, is restarted
/// like any engine (its runs' models entered again), and stops with the last one (docs/design/supervision.md,
/// The shared Ollama server).
extension Supervisor {
    /// Starts (or reuses) the shared server and returns; the model enters it in the run's monitor task,
    /// since a pull can take minutes.
    func beginOllama(_ run: ManagedRun) async throws {
        let host: OllamaHost
        do {
            host = try await ensureOllamaHost()
        } catch {
            fail(run, reason: "\(error)")
            throw error
        }
        attach(run, to: host)
        persist(run)
        let id = run.record.id
        run.monitor = Task { await self.enterOllamaModel(id: id, host: host) }
    }

    func enterOllamaModel(id: String, host: OllamaHost) async {
        guard let run = runs[id] else { return }
        do {
            try await enterModel(run, host: host)
        } catch {
            if !Task.isCancelled, run.record.desiredState == .running { fail(run, reason: "\(error)") }
            return
        }
        guard !Task.isCancelled, run.record.desiredState == .running, ollamaHost === host else { return }
        run.record.state = .ready
        run.record.reason = nil
        persist(run)
        run.log.note("ready: \(run.spec?.ollama?.modelName ?? run.record.model) is in Ollama on http://127.0.0.1:\(host.port)")
    }

    func attach(_ run: ManagedRun, to host: OllamaHost) {
        run.record.pid = host.process?.pid
        run.record.processStartTime = host.process?.startTime
        run.record.port = host.port
        run.record.state = .starting
    }

    /// The shared server, started (and waited for) if needed.
    func ensureOllamaHost() async throws -> OllamaHost {
        if let host = ollamaHost {
            if let starting = host.starting { try await starting.value }
            if host.ready { return host }
        }
        let taken = Set(runs.values.compactMap(\.record.port))
        let port = try ports.allocate(excluding: taken)
        let host = OllamaHost(port: port, log: Self.makeLog(id: "ollama", in: dataDirectory, configuration))
        ollamaHost = host
        let starting = Task { try await self.startOllamaProcess(host) }
        host.starting = starting
        do {
            try await starting.value
        } catch {
            if ollamaHost === host { ollamaHost = nil }
            throw error
        }
        host.starting = nil
        host.monitor = Task { await self.superviseOllamaHost(host) }
        return host
    }

    /// Spawns `ollama serve` and waits until `GET /` answers 200.
    func startOllamaProcess(_ host: OllamaHost) async throws {
        let settings = configuration.settings(for: .ollama)
        let command = try builder.command(for: LaunchSpec(engine: .ollama, servedName: "ollama"), port: host.port)
        let output = try host.log.makePipe()
        defer { close(output) }
        host.log.note("exec \(command.arguments.joined(separator: " ")) (OLLAMA_HOST=\(command.environment["OLLAMA_HOST"] ?? ""))")
        let process = EngineProcess(childPid: try await Spawner.shared.spawn(command, outputDescriptor: output))
        host.process = process
        host.ready = false
        let probe = try HealthProbe(port: host.port, path: OllamaContract().readinessPath, timeout: configuration.probeTimeout)
        let clock = ContinuousClock()
        let deadline = clock.now + settings.startTimeout
        while true {
            if let status = process.exitStatus {
                await host.log.waitUntilDrained(timeout: .seconds(1))
                host.process = nil
                throw LaunchError(
                    code: .spawnFailed,
                    message: "ollama serve exited while starting (\(status)); last log lines:\n"
                        + host.log.recentLines(configuration.reasonLogLines).joined(separator: "\n"))
            }
            if await probe.check() { break }
            if clock.now >= deadline {
                await process.terminate(grace: settings.stopGrace)
                host.process = nil
                throw LaunchError(code: .spawnFailed, message: "ollama serve did not answer within \(format(settings.startTimeout))")
            }
            _ = await process.waitForExit(timeout: configuration.readinessInterval)
        }
        host.ready = true
        host.log.note("ready on http://127.0.0.1:\(host.port)")
    }

    /// Brings a run's model into the server, logging progress into the run's log.
    func enterModel(_ run: ManagedRun, host: OllamaHost) async throws {
        guard let source = run.spec?.ollama else {
            throw LaunchError(code: .invalidSpec, message: "run \(run.record.name) has no Ollama model source")
        }
        let client = try OllamaClient(port: host.port)
        let log = run.log
        log.note("entering \(source.modelName) into Ollama")
        try await onThread {
            switch source {
            case .pull(let name): try client.pull(name) { log.note("ollama: \($0)") }
            case .gguf(let path, let name, let sha256):
                try client.importGGUF(path: path, name: name, sha256: sha256) { log.note("ollama: \($0)") }
            }
        }
    }

    /// Watches the shared server; when it dies, restarts it with backoff and enters every running Ollama
    /// run's model again, or fails them all past the burst limit.
    func superviseOllamaHost(_ host: OllamaHost) async {
        let policy = configuration.restart
        let settings = configuration.settings(for: .ollama)
        while true {
            guard let process = host.process else { return }
            let probe = try? HealthProbe(port: host.port, path: OllamaContract().livenessPath, timeout: configuration.probeTimeout)
            var failures = 0
            var cause = ""
            while true {
                if let status = await process.waitForExit(timeout: configuration.livenessInterval) {
                    cause = "ollama serve exited unexpectedly (\(status))"
                    break
                }
                if Task.isCancelled { return }
                if let probe, await probe.check() {
                    failures = 0
                } else {
                    failures += 1
                    if failures >= configuration.livenessFailureThreshold {
                        cause = "ollama serve failed \(failures) liveness probes in a row"
                        break
                    }
                }
                if Task.isCancelled { return }
            }
            if Task.isCancelled { return }
            _ = await Task { await process.terminate(grace: settings.stopGrace) }.value
            await host.log.waitUntilDrained(timeout: .seconds(1))
            host.process = nil
            host.ready = false
            host.log.note(cause)
            let members = runs.values.filter { $0.engine == .ollama && $0.record.desiredState == .running && $0.record.state != .failed }
            guard !members.isEmpty, !Task.isCancelled else { return }
            let clock = ContinuousClock()
            let now = clock.now
            host.restartTimes.removeAll { now - $0 > policy.burstWindow }
            if host.restartTimes.count >= policy.burstLimit {
                let reason =
                    "\(cause); it was restarted \(host.restartTimes.count) times within \(format(policy.burstWindow)), so modeld gave up. Last log lines:\n"
                    + host.log.recentLines(configuration.reasonLogLines).joined(separator: "\n")
                for run in members { fail(run, reason: reason) }
                if ollamaHost === host { ollamaHost = nil }
                return
            }
            host.consecutiveFailures += 1
            let delay = policy.delay(attempt: host.consecutiveFailures)
            for run in members {
                run.record.state = .starting
                run.record.pid = nil
                run.record.reason = "\(cause); restarting in \(format(delay))"
                persist(run)
                run.log.note("\(cause); restarting in \(format(delay))")
            }
            do {
                try await Task.sleep(for: delay)
            } catch {
                return
            }
            host.restartTimes.append(clock.now)
            do {
                try await startOllamaProcess(host)
            } catch {
                if Task.isCancelled { return }
                host.log.note("restart failed: \(error)")
                continue
            }
            for run in runs.values where run.engine == .ollama && run.record.desiredState == .running && run.record.state != .failed {
                run.record.restarts += 1
                attach(run, to: host)
                persist(run)
                do {
                    try await enterModel(run, host: host)
                    run.record.state = .ready
                    run.record.reason = nil
                    persist(run)
                } catch {
                    fail(run, reason: "\(error)")
                }
            }
        }
    }

    /// Takes a run's model out of the server, and stops the server when no Ollama run needs it.
    func leaveOllama(_ run: ManagedRun) async {
        guard let host = ollamaHost else { return }
        if let name = run.spec?.ollama?.modelName, host.ready, let client = try? OllamaClient(port: host.port) {
            _ = try? await onThread { client.unload(name) }
        }
        run.record.pid = nil
        let others = runs.values.contains { $0 !== run && $0.engine == .ollama && $0.record.desiredState == .running && $0.record.state.isLive }
        if !others, !shuttingDown { await stopOllamaHost() }
    }

    /// Stops the shared server (SIGTERM to its group, grace, SIGKILL).
    func stopOllamaHost() async {
        guard let host = ollamaHost else { return }
        ollamaHost = nil
        if let monitor = host.monitor {
            monitor.cancel()
            await monitor.value
        }
        if let process = host.process {
            let grace = configuration.settings(for: .ollama).stopGrace
            host.log.note("stopping ollama serve: SIGTERM to process group \(process.pid), SIGKILL after \(format(grace))")
            let (status, _) = await Task { await process.terminate(grace: grace) }.value
            host.log.note("stopped (\(status.map { "\($0)" } ?? "status unknown"))")
            host.process = nil
        }
    }
}
