import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient
import Synchronization

/// `modelctl start REF --engine E`: starts a pulled model on an engine.
struct RunStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start a model on an engine (builtin, vllm, sglang, ollama, llamacpp).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Catalog ref or repository id.") var ref: String
    @Option(name: .long, help: "builtin, vllm, sglang, ollama or llamacpp (default: the catalog's default engine).") var engine: String?
    @Option(name: .long, help: "Run name, also the model name clients send (default: REF).") var name: String?
    @Option(name: .long, help: "Which local version: commit, prefix or revision (default: newest ready).") var revision: String?
    @Option(name: .long, help: "huggingface (default) or modelscope.") var source: String?
    @Option(name: .long, help: "GPUs for the engine (CUDA_VISIBLE_DEVICES), e.g. 0,1.") var gpus: String?
    @Option(name: .long, help: "Tensor parallel size.") var tensorParallel: Int?
    @Option(name: .long, help: "Pipeline parallel size (vLLM, SGLang).") var pipelineParallel: Int?
    @Option(name: .long, help: "Data parallel size: model replicas (vLLM, SGLang).") var dataParallel: Int?
    @Option(name: .long, help: "GPU memory fraction for vLLM/SGLang.") var memoryFraction: Double?
    @Option(name: .long, help: "Maximum context length.") var maxContext: Int?
    @Option(name: .long, help: "llama.cpp: requests decoded at once (its slots).") var parallel: Int?
    @Option(name: .long, help: "llama.cpp: CPU threads.") var threads: Int?
    @Option(name: .long, help: "llama.cpp: layers offloaded to the GPU.") var gpuLayers: Int?
    @Option(name: .long, help: "llama.cpp: the GGUF file to load, relative to the snapshot (when it holds several).") var modelFile: String?
    @Option(name: .long, help: "vLLM across hosts: how many hosts the run spans (docs/multi-node.md).") var nodes: Int?
    @Option(name: .long, help: "vLLM across hosts: this host's rank, 0 for the head (default), others run a headless worker.")
    var nodeRank: Int?
    @Option(name: .long, help: "vLLM across hosts: the head host's address.") var masterAddr: String?
    @Option(name: .long, help: "vLLM across hosts: the head's rendezvous port (default 29501).") var masterPort: Int?
    @Option(
        name: .long,
        help:
            "builtin, llamacpp: the weights' quantization (q4_k_m, q8_0, bf16...): a file of the model's GGUF repository, pulled if needed, or quantized on load (q8_0, q4_0)."
    )
    var quantization: String?
    @Option(name: .customLong("engine-arg"), help: "Extra engine argument (repeatable).") var engineArgs: [String] = []
    @Option(
        name: .long, help: "Unload after this long without requests (30s, 10m, 1h; default: keep until stopped); a request naming it loads it again.")
    var keepAlive: String?
    @Flag(name: .long, help: "Wait until the run is ready (or failed).") var wait = false
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        do {
            let client = try global.client()
            var run: RunSummary = try await client.call(
                "POST", "/api/v1/models/start",
                body: StartRequest(
                    model: ref, engine: engine, name: name, revision: revision, source: source, gpus: gpus,
                    tensorParallel: tensorParallel, memoryFraction: memoryFraction, maxContext: maxContext,
                    engineArgs: engineArgs.isEmpty ? nil : engineArgs, keepAlive: keepAlive, parallel: parallel, threads: threads,
                    gpuLayers: gpuLayers, modelFile: modelFile, pipelineParallel: pipelineParallel, dataParallel: dataParallel,
                    nodes: nodes, nodeRank: nodeRank, masterAddr: masterAddr, masterPort: masterPort, quantization: quantization))
            if wait {
                while run.state == "starting" {
                    try await Task.sleep(for: .milliseconds(250))
                    run = try await client.call("GET", "/api/v1/models/running/\(run.runID)")
                }
            }
            if json {
                printJSON(run)
            } else {
                print("\(run.runID) \(run.name) \(run.state) \(run.endpoint ?? "")")
            }
            if run.state == "failed" {
                printError("modelctl: run \(run.name) failed: \(run.reason ?? "no reason recorded")")
                throw ExitCode(1)
            }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw ModelctlExit.fail(error)
        }
    }
}

/// `modelctl ps`: the runs and their states.
struct RunList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ps", abstract: "List runs.")

    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Print JSON.") var json = false
    @Flag(name: .long, help: "Print the list again whenever a run changes (from the daemon's event stream), until interrupted.") var watch = false

    func run() async throws {
        do {
            let client = try global.client()
            show(try await client.call("GET", "/api/v1/models/running"))
            guard watch else { return }
            // Each run event (or a `reload`) is a reason to read the list again; the stream's own data is not needed.
            let (changes, signal) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
            // A client of its own: one client's requests take turns, and this one never ends.
            let events = try global.client()
            let stream = Task {
                defer { signal.finish() }
                try await events.streamText("/api/v1/events") { line in
                    if line.hasPrefix("event: run.") || line == "event: reload" { signal.yield() }
                    return true
                }
            }
            for await _ in changes {
                show(try await client.call("GET", "/api/v1/models/running"))
            }
            try await stream.value
            printError("modeld closed the event stream")
            throw ExitCode(1)
        } catch let error as ExitCode {
            throw error
        } catch {
            throw ModelctlExit.fail(error)
        }
    }

    /// Prints the runs (after clearing the screen when watching a terminal).
    private func show(_ runs: [RunSummary]) {
        if json {
            printJSON(runs)
            if watch { fflush(nil) }
            return
        }
        if watch && isatty(STDOUT_FILENO) == 1 { print("\u{1B}[H\u{1B}[2J", terminator: "") }
        var rows = [["RUN_ID", "NAME", "MODEL", "ENGINE", "STATE", "PID", "PORT", "RESTARTS", "UNLOAD", "REASON"]]
        for run in runs {
            let reason = run.reason.map { String($0.split(separator: "\n").last ?? "").prefix(60) } ?? ""
            rows.append([
                run.runID, run.name, run.model, run.engine, run.state, run.pid.map(String.init) ?? "-",
                run.port.map(String.init) ?? "-", String(run.restarts), unloadColumn(run), String(reason),
            ])
        }
        print(table(rows))
        // Each list goes out whole at once, also into a pipe.
        if watch { fflush(nil) }
    }
}

/// When a loaded run with a keep-alive will be unloaded if no request comes: `in 4m12s`, `idle 30s`.
private func unloadColumn(_ run: RunSummary) -> String {
    guard let keepAlive = run.keepAlive else { return "-" }
    guard run.state == "ready", let lastUsed = run.lastUsedAt else { return "after \(keepAlive)s idle" }
    let left = max(0, Int((lastUsed.timeIntervalSinceNow + Double(keepAlive)).rounded()))
    return left >= 60 ? "in \(left / 60)m\(left % 60)s" : "in \(left)s"
}

/// `modelctl stop ID|NAME`.
struct RunStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop a run; it stays stopped across restarts.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run id or name.") var run: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let stopped: RunSummary
        do {
            stopped = try await global.client().call("POST", "/api/v1/models/running/\(pathComponent(run))/stop")
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(stopped) }
        print("\(stopped.runID) \(stopped.name) \(stopped.state)")
    }
}

/// `modelctl logs ID|NAME [-f]`.
struct RunLogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Show a run's engine log.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run id or name.") var run: String
    @Flag(name: .shortAndLong, help: "Follow the log as it grows.") var follow = false
    @Option(name: .long, help: "Lines from the end to show first.") var tail = 100
    @Flag(name: .long, help: "Print JSON (without --follow).") var json = false

    func run() async throws {
        do {
            let client = try global.client()
            let path = "/api/v1/models/running/\(pathComponent(run))/logs?tail=\(tail)"
            if follow {
                try await client.streamText(path + "&follow=true") { line in
                    print(line)
                    fflush(nil)
                    return true
                }
            } else {
                let logs: RunLogs = try await client.call("GET", path)
                if json { return printJSON(logs) }
                for line in logs.lines { print(line) }
            }
        } catch {
            throw ModelctlExit.fail(error)
        }
    }
}

/// Percent-encodes a run id or name for a URL path.
func pathComponent(_ text: String) -> String {
    percentEncoded(text) { isUnreserved($0) || "!$&'()*+,;=:@".utf8.contains($0) }
}
