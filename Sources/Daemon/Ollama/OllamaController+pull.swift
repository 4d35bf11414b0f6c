import Catalog
import Downloads
import Foundation
import Hubs
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModeldAPI
import NIOCore

extension OllamaController {
    // MARK: Pull

    /// `POST /api/pull`: starts (or joins) a pull of a catalog ref, `owner/name` or `hf.co/owner/name[:revision]`
    /// through the pull service, and answers Ollama's progress lines.
    func pull(_ request: Request, context: Context) async throws -> Response {
        let body = try await Self.body(request)
        let name = try Self.modelName(body)
        let source = name.source ?? .huggingface
        let repo: String
        var revision: String?
        if name.isRepository {
            repo = name.model
            revision = name.isLatest ? nil : name.tag
        } else {
            do {
                repo = try catalog.resolve(ModelRef(parsing: name.routeModel), source: source).repo
            } catch let error as ModelRefError {
                throw OllamaError(.notFound, "pull model manifest: \(error.description)")
            }
        }
        let job = pulls.pull(PullRequest(source: source, repo: repo, revision: revision))
        pullEvents.watch(job)
        context.logger.info("pull (Ollama API)", metadata: ["repo": "\(repo)", "job": "\(job.id)", "source": "\(source.rawValue)"])
        if body["stream"] as? Bool == false {
            do {
                _ = try await job.result()
            } catch let error as PullError {
                throw OllamaError(error.apiError.httpStatus, error.message)
            }
            return OllamaJSON.response(["status": "success"])
        }
        let events = job.events()
        return Response(
            status: .ok, headers: [.contentType: "application/x-ndjson"],
            body: ResponseBody { writer in
                // A client that goes away stops only its own stream; the pull goes on (as for /api/v1/models/pull).
                var progress = OllamaPullProgress()
                for await event in events {
                    for line in progress.lines(for: event) {
                        try await writer.write(OllamaJSON.line(line))
                    }
                }
                try await writer.finish(nil)
            })
    }

    // MARK: Embeddings

    /// `POST /api/embed` (`input`: a string or a list) and the older `POST /api/embeddings` (`prompt`): the run's
    /// `/v1/embeddings`.
    func embed(_ request: Request, context: Context, legacy: Bool) async throws -> Response {
        let started = ContinuousClock.now
        let body = try await Self.body(request)
        let name = try Self.modelName(body)
        let input: Any
        if legacy {
            guard let prompt = body["prompt"] as? String else { throw OllamaError(.badRequest, "prompt must be a string") }
            input = prompt
        } else {
            guard let value = body["input"], value is String || (value as? [Any])?.allSatisfy({ $0 is String }) == true else {
                throw OllamaError(.badRequest, "input must be a string or a list of strings")
            }
            input = value
        }
        try Authorizer.check(model: body["model"] as? String ?? name.description, for: context.apiKey)
        let keepAlive = try OllamaConversion.keepAlive(body["keep_alive"])
        let beforeLoad = ContinuousClock.now
        let lease = try await acquire(name, target: try resolvedAlias(name), keepAlive: keepAlive)
        defer { lease.release() }
        let loadDuration = ContinuousClock.now - beforeLoad
        let run = lease.run
        let ticket = UsageTicket(
            ledger: usage, keyID: context.apiKey?.id, model: run.model, backend: UsageTicket.backend(run: run.name), route: request.uri.path,
            started: started)
        let dimensions = (body["dimensions"] as? Int).flatMap { $0 > 0 ? $0 : nil }
        let (embeddings, promptTokens) = try await Self.embeddings(of: input, dimensions: dimensions, lease: lease, name: name)
        let counted = ReplyMeter.Usage(promptTokens: promptTokens, completionTokens: 0)
        if promptTokens > 0 { metrics.recordUsage(counted, model: run.model) }
        ticket.record(status: 200, usage: counted)
        if legacy { return OllamaJSON.response(["embedding": embeddings.first ?? [Double]()]) }
        return OllamaJSON.response([
            "model": body["model"] as? String ?? name.description, "embeddings": embeddings,
            "total_duration": OllamaJSON.nanoseconds(.now - started), "load_duration": OllamaJSON.nanoseconds(loadDuration),
            "prompt_eval_count": promptTokens,
        ])
    }
}

extension OllamaController {
    /// Sends `input` to the run's `/v1/embeddings` and answers the vectors in input order with the prompt's token
    /// count (0 when the engine gives none).
    static func embeddings(of input: Any, dimensions: Int?, lease: OllamaLease, name: OllamaName) async throws -> ([Any], Int) {
        let run = lease.run
        var openAI: [String: Any] = ["model": run.servedName, "input": input]
        if let dimensions { openAI["dimensions"] = dimensions }
        let upstream: EngineReply
        do {
            upstream = try await lease.send(path: "/v1/embeddings", body: OllamaJSON.encode(openAI), accept: "application/json")
        } catch {
            throw OllamaError.engineDidNotAnswer(run, error)
        }
        guard (200..<300).contains(upstream.status) else {
            let error = await Self.engineError(upstream)
            if error.status == .notFound {
                throw OllamaError(.badRequest, "\(name) has no embeddings on the \(run.engine.displayName): \(error.message)")
            }
            throw error
        }
        var data = Data()
        let whole: Bool
        do {
            whole = try await upstream.collect(upTo: EngineCall.maxReply, into: &data)
        } catch {
            throw OllamaError(.internalServerError, "the engine broke off its reply: \(error)")
        }
        guard whole else { throw OllamaError(.internalServerError, "the engine's reply is larger than \(EngineCall.maxReply >> 20) MiB") }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let items = object["data"] as? [[String: Any]] else {
            throw OllamaError(.internalServerError, "the engine's reply is not an OpenAI embeddings reply")
        }
        let embeddings = items.sorted { ($0["index"] as? Int ?? 0) < ($1["index"] as? Int ?? 0) }.map { $0["embedding"] ?? [Double]() }
        return (embeddings, (object["usage"] as? [String: Any])?["prompt_tokens"] as? Int ?? 0)
    }
}

/// A pull's events as Ollama's progress lines (docs/ollama-api.md, Pull): `pulling manifest` first, then
/// `pulling <file>` with `digest` (the file's path in the repository: modeld pulls files, not blobs), `total` and
/// `completed` as each file moves, and `verifying sha256 digest`, `writing manifest` and `success` at the end;
/// a failure is an `{"error": ...}` line.
struct OllamaPullProgress {
    private var started = false

    mutating func lines(for event: PullEvent) -> [[String: Any]] {
        var lines: [[String: Any]] = []
        if !started {
            started = true
            lines.append(["status": "pulling manifest"])
        }
        switch event.event {
        case .error:
            lines.append(["error": event.error?.message ?? "the pull \(event.state.rawValue)"])
        case .done:
            lines.append(contentsOf: [["status": "verifying sha256 digest"], ["status": "writing manifest"], ["status": "success"]])
        case .file, .progress:
            var files = event.activeFiles ?? []
            if let file = event.file, !files.contains(where: { $0.path == file.path }) { files.append(file) }
            for file in files {
                lines.append([
                    "status": "pulling \(file.path)", "digest": file.path, "total": file.totalBytes,
                    "completed": file.state == "downloading" ? file.completedBytes : file.totalBytes,
                ])
            }
        case .status:
            break
        }
        return lines
    }
}
