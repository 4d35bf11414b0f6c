import Catalog
import Downloads
import Foundation
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModeldAPI
import NIOCore
import NIOHTTP1
import Transfer

/// Starting, listing and stopping engine runs:
///
/// | route | what |
/// |---|---|
/// | `POST /api/v1/models/start` | start a model on an engine; returns the run (`starting`) |
/// | `GET /api/v1/models/running` | every run |
/// | `GET /api/v1/models/running/{id}` | one run, by id or name |
/// | `POST /api/v1/models/running/{id}/stop` | stop a run (it stays stopped across restarts) |
/// | `GET /api/v1/models/running/{id}/logs?tail=N&follow=true` | its log; `follow` streams text lines |
/// | `GET /api/v1/models/running/{id}/metrics` | its engine's own Prometheus metrics, relayed |
struct RunsController {
    let catalog: ModelCatalog
    let store: Store
    let supervisor: Supervisor
    let scheduler: RunScheduler
    /// Pulls the GGUF file of a quantization a start asks for.
    let pulls: PullService
    let pullEvents: PullEventSource

    func addRoutes(to group: RouterGroup<DaemonRequestContext>) {
        group.post("start", use: start)
        group.get("running", use: list)
        group.get("running/:id", use: get)
        group.post("running/:id/stop", use: stop)
        group.get("running/:id/logs", use: logs)
        group.get("running/:id/metrics", use: engineMetrics)
    }

    @Sendable func start(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<RunSummary> {
        // The earlier platform's names are accepted too (docs/older-api.md): `model_id` for `model`, `engine_type` for `engine`.
        var raw = try await RawBody.read(request, limit: context.maxUploadSize)
        try raw.rename("model_id", to: "model")
        try raw.rename("engine_type", to: "engine")
        let body = try APIError.decodeJSON(as: StartRequest.self, from: raw.data)
        let source = try ModelsController.source(body.source)
        var resolved = try ModelsController.resolve(catalog, model: body.model, source: source)
        let engineName = body.engine ?? resolved.entry?.defaultEngine ?? EngineKind.builtin.rawValue
        guard let engine = EngineKind(rawValue: engineName) else {
            throw APIError.badRequest("unknown engine \"\(engineName)\" (use builtin, vllm, sglang, ollama or llamacpp)")
        }
        // llama.cpp loads GGUF files: a catalog model runs from its GGUF repository where it has one.
        if engine == .llamacpp, source == .huggingface, let ggufRepo = resolved.size?.ggufRepo { resolved.repo = ggufRepo }
        let options = RunOptions(
            gpus: body.gpus, tensorParallelSize: body.tensorParallel, memoryFraction: body.memoryFraction,
            maxContext: body.maxContext, parallel: body.parallel, threads: body.threads, gpuLayers: body.gpuLayers,
            modelFile: body.modelFile, pipelineParallelSize: body.pipelineParallel, dataParallelSize: body.dataParallel,
            multiNode: try Self.multiNode(body), extraArguments: body.engineArgs ?? [])
        let weights = try body.quantization.map { try Self.weights(for: $0, of: resolved, engine: engine, source: source, model: body.model) }
        var keepAlive: Int?
        if let text = body.keepAlive?.text {
            guard let parsed = KeepAlive(parsing: text) else {
                throw APIError.badRequest("keep_alive \"\(text)\" is not a duration such as 30s, 10m, 1h, a number of seconds, or never")
            }
            keepAlive = parsed.seconds
        }
        let servedName = body.name ?? body.model
        var spec = LaunchSpec(engine: engine, servedName: servedName, options: options)
        var versionID: Int64?
        if engine == .ollama {
            guard let ollamaName = resolved.size?.ollamaName else {
                throw APIError.badRequest("\(body.model) has no Ollama name in the catalog; start it with another engine")
            }
            spec.ollama = .pull(name: ollamaName)
        } else {
            let version: LocalVersion
            switch weights {
            case .ggufFile(let repo, let quantization):
                let (ready, file) = try await ggufVersion(repo: repo, quantization: quantization, revision: body.revision)
                version = ready
                spec.options.modelFile = file
            case .onLoad(let quantization):
                version = try await readyVersion(resolved, revision: body.revision, model: body.model)
                spec.options.quantization = quantization
            case .asStored, nil:
                version = try await readyVersion(resolved, revision: body.revision, model: body.model)
            }
            spec.modelPath = version.version.path
            versionID = version.version.id
        }
        // Room for it: idle on-demand runs may be unloaded; an explicit start itself is never refused for the limit.
        let request = RunRequest(name: body.name, model: body.model, versionID: versionID, spec: spec, keepAlive: keepAlive)
        let run = try await scheduler.start(request)
        context.logger.info("run started", metadata: ["run": "\(run.runID)", "engine": "\(engine.rawValue)", "model": "\(body.model)"])
        return Envelope(requestID: context.id, data: await summary(run))
    }

    /// This host's part of a run across hosts, from `nodes`, `node_rank`, `master_addr` and `master_port`; nil when
    /// none is given. The numbers themselves are checked by the vLLM contract.
    static func multiNode(_ body: StartRequest) throws -> MultiNode? {
        guard let nodes = body.nodes else {
            guard body.nodeRank == nil, body.masterAddr == nil, body.masterPort == nil else {
                throw APIError.badRequest("node_rank, master_addr and master_port belong to a run across hosts: give nodes too")
            }
            return nil
        }
        guard let address = body.masterAddr else {
            throw APIError.badRequest("a run across \(nodes) hosts needs master_addr, the head host's address (docs/multi-node.md)")
        }
        return MultiNode(nodes: nodes, rank: body.nodeRank ?? 0, masterAddress: address, masterPort: body.masterPort ?? 29501)
    }

    @Sendable func list(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<[RunSummary]> {
        var summaries: [RunSummary] = []
        for run in await supervisor.list() { summaries.append(await summary(run)) }
        return Envelope(requestID: context.id, data: summaries)
    }

    @Sendable func get(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<RunSummary> {
        let id = try context.parameters.require("id")
        return Envelope(requestID: context.id, data: await summary(try await supervisor.get(id)))
    }

    @Sendable func stop(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<RunSummary> {
        let id = try context.parameters.require("id")
        return Envelope(requestID: context.id, data: await summary(try await supervisor.stop(id)))
    }

    @Sendable func logs(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        let tailText = request.uri.queryParameters["tail"].map(String.init) ?? "100"
        guard let tail = Int(tailText), tail >= 0 else { throw APIError.badRequest("tail must be a non-negative integer") }
        let run = try await supervisor.get(id)
        if request.uri.queryParameters["follow"] == "true" {
            let lines = try await supervisor.followLogs(id, tail: tail)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    for await line in lines {
                        try await writer.write(ByteBuffer(string: line + "\n"))
                    }
                    try await writer.finish(nil)
                })
        }
        let lines = try await supervisor.logs(id, tail: tail)
        return try Envelope(requestID: context.id, data: RunLogs(runID: run.runID, lines: lines)).response(from: request, context: context)
    }

    /// The engine's own `GET /metrics` (Prometheus text), relayed as it comes: llama.cpp serves it (modeld starts it
    /// with `--metrics`), vLLM always, SGLang when started with `--enable-metrics`.
    @Sendable func engineMetrics(_ request: Request, context: DaemonRequestContext) async throws -> Response {
        let run = try await supervisor.get(try context.parameters.require("id"))
        guard run.state == .ready, let endpoint = run.endpoint else {
            throw APIError(.conflict, "run \(run.name) is \(run.state.rawValue): its engine's metrics are read while it is ready")
        }
        let engineRequest = try EngineRequest(endpoint: endpoint, path: "/metrics", method: .GET, headers: [], body: ByteBuffer())
        let reply: (head: Transfer.HTTPResponseHead, body: ByteBuffer)
        do {
            reply = try await EngineClient.shared.fetch(engineRequest, limit: Self.maxEngineMetrics)
        } catch {
            throw APIError.engineDidNotAnswer(error)
        }
        guard reply.head.status == 200 else {
            throw APIError.notFound("the \(run.engine.displayName) engine of run \(run.name) serves no metrics (HTTP \(reply.head.status))")
        }
        let contentType = reply.head.headers["content-type"] ?? "text/plain; version=0.0.4; charset=utf-8"
        return Response(status: .ok, headers: [.contentType: contentType], body: .init(byteBuffer: reply.body))
    }

    /// The most of an engine's metrics that is relayed.
    static let maxEngineMetrics = 16 << 20

    // MARK: Helpers

    /// A run with when it was last used, while it is loaded.
    private func summary(_ run: RunInfo) async -> RunSummary {
        var summary = RunSummary(run)
        if run.state == .ready || run.state == .starting { summary.lastUsedAt = await scheduler.lastUsed(run.runID) }
        return summary
    }

    /// The version to run: the one named by `revision`, else the newest ready one.
    private func readyVersion(_ resolved: ResolvedModel, revision: String?, model: String) async throws -> LocalVersion {
        let versions = try await store.versions(source: resolved.source.rawValue, repo: resolved.repo)
        let ready = versions.filter { $0.version.state == .ready }
        if let revision, !revision.isEmpty {
            let match =
                versions.first { $0.version.commit == revision || $0.version.requestedRevision == revision }
                ?? versions.first { revision.count >= 7 && $0.version.commit.hasPrefix(revision) }
            guard let match else { throw APIError.notFound("no local version \(revision) of \(resolved.repo); `modelctl list` shows what is stored") }
            guard match.version.state == .ready else {
                throw APIError(
                    .conflict, "version \(match.version.commit.prefix(12)) of \(resolved.repo) is \(match.version.state.rawValue), not ready")
            }
            return match
        }
        guard let newest = ready.first else {
            throw APIError(.conflict, "\(model) is not pulled on this host: run `modelctl pull \(model)` first")
        }
        return newest
    }
}

extension RunSummary {
    init(_ run: RunInfo) {
        self.init(
            runID: run.runID, name: run.name, model: run.model, engine: run.engine.rawValue, state: run.state.rawValue,
            desiredState: run.desiredState.rawValue, pid: run.pid, port: run.port, endpoint: run.endpoint,
            servedName: run.servedName, restarts: run.restarts, exitStatus: run.exitStatus, reason: run.reason,
            keepAlive: run.keepAlive, onDemand: run.onDemand, createdAt: run.createdAt, updatedAt: run.updatedAt, gpus: run.gpus)
    }
}
