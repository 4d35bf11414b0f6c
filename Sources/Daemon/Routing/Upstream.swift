import Foundation
import ModelStore
import ModeldAPI
import NIOCore
import NIOHTTP1

/// An upstream ready for requests: its stored settings and the key read from where they say (docs/gateway.md,
/// Secrets). The key goes only into the `Authorization` (or Azure's `api-key`) header of requests to it: never
/// into a log line, a URL or an API reply.
struct Upstream: Sendable {
    let record: UpstreamRecord
    let kind: UpstreamKind
    /// The provider's key, read when the upstream was loaded; nil when none is configured or it cannot be read.
    let key: String?
    /// Why the key could not be read, for `modelctl upstream list` and `test` (names the variable or file, never a value).
    let keyProblem: String?

    var name: String { record.name }
    /// The backend's name in metrics, logs and usage records.
    var backend: String { "upstream:\(record.name)" }

    /// Reads the key from the environment variable or file the record names.
    init(_ record: UpstreamRecord, environment: [String: String]) {
        self.record = record
        kind = UpstreamKind(rawValue: record.kind) ?? .openai
        (key, keyProblem) = Self.readKey(record, environment: environment)
    }

    private static func readKey(_ record: UpstreamRecord, environment: [String: String]) -> (String?, String?) {
        if let variable = record.apiKeyEnv {
            guard let value = environment[variable]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else {
                return (nil, "the environment variable \(variable) is not set in modeld's environment")
            }
            return (value, nil)
        }
        if let file = record.apiKeyFile {
            guard let data = FileManager.default.contents(atPath: file) else { return (nil, "cannot read the key file \(file)") }
            let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return value.isEmpty ? (nil, "the key file \(file) is empty") : (value, nil)
        }
        return (nil, nil)
    }

    /// Whether it serves `model` (a name it was given or listed), ignoring case.
    func serves(_ model: String) -> String? {
        record.servedModels.first { $0.caseInsensitiveCompare(model) == .orderedSame }
    }

    /// The request for one of the gateway's routes (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`).
    /// - Parameter route: the gateway's path, `/v1/...`.
    func request(route: String, body: ByteBuffer, accept: String, model: String) throws -> EngineRequest {
        let operation = String(route.dropFirst("/v1/".count))
        let path =
            switch kind {
            case .openai: "/\(operation)"
            case .modeld, .ollama: route
            case .azure: "/openai/deployments/\(Self.escaped(model))/\(operation)?api-version=\(Self.escaped(record.apiVersion ?? Self.azureVersion))"
            }
        var request = try EngineRequest(
            endpoint: record.url, path: path, headers: [("Content-Type", "application/json"), ("Accept", accept)] + authorization, body: body)
        request.firstByteTimeout = .milliseconds(Int64(record.timeout * 1000))
        return request
    }

    /// The request that lists its models: discovery, `modelctl upstream test` and the probe of a cooled upstream.
    func listRequest() throws -> EngineRequest {
        let path =
            switch kind {
            case .openai: "/models"
            case .modeld: "/v1/models"
            case .ollama: "/api/tags"
            case .azure: "/openai/models?api-version=\(Self.escaped(record.apiVersion ?? Self.azureVersion))"
            }
        var request = try EngineRequest(
            endpoint: record.url, path: path, method: .GET, headers: [("Accept", "application/json")] + authorization, body: ByteBuffer())
        request.firstByteTimeout = .milliseconds(Int64(record.timeout * 1000))
        return request
    }

    /// The model names a listing reply holds: OpenAI's `data[].id`, Ollama's `models[].name`.
    func models(inListing body: ByteBuffer) -> [String] {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any] else { return [] }
        let (field, id) = kind == .ollama ? ("models", "name") : ("data", "id")
        return (object[field] as? [[String: Any]] ?? []).compactMap { $0[id] as? String }
    }

    /// Azure's `api-version` when none is set.
    static let azureVersion = "2024-10-21"

    private var authorization: [(String, String)] {
        guard let key else { return [] }
        return kind == .azure ? [("api-key", key)] : [("Authorization", "Bearer \(key)")]
    }

    private static func escaped(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?&=#"))) ?? text
    }

    /// The listing as the API shows it: where the key comes from and whether it is there, never the key.
    func info(health: BackendRouter.HealthInfo) -> UpstreamInfo {
        UpstreamInfo(
            name: record.name, kind: kind, url: record.url, apiKeyEnv: record.apiKeyEnv, apiKeyFile: record.apiKeyFile, apiKeySet: key != nil,
            apiVersion: record.apiVersion, models: record.servedModels, discover: record.discover, discoveredAt: record.discoveredAt,
            priority: record.priority, weight: record.weight, costIn: record.costIn, costOut: record.costOut,
            maxConcurrency: record.maxConcurrency, timeout: record.timeout, enabled: record.enabled,
            state: record.enabled ? health.state : "disabled", inFlight: health.inFlight, latencyMs: health.latency.map { $0 * 1000 })
    }
}
