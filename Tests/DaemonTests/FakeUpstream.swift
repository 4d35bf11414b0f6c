import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// An upstream on loopback that answers as an OpenAI-compatible server (`/v1/chat/completions`, `/v1/models`),
/// Azure OpenAI (`/openai/deployments/{deployment}/chat/completions?api-version=`, key in `api-key`) and Ollama
/// (`/api/tags`, and its OpenAI-compatible `/v1` routes) do, and fails on demand: 500, 429 with `Retry-After`,
/// a hang before the first byte, a stream cut after its first chunk. Every request is recorded.
final class FakeUpstream: Sendable {
    enum Behaviour: Sendable, Equatable {
        case ok
        case status(Int)
        /// 429 with this `Retry-After`.
        case rateLimited(String)
        /// No reply until the fake stops.
        case hang
        /// One chunk of the stream, then the connection closes.
        case cut
    }

    struct Recorded: Sendable {
        var method: String
        var path: String
        var query: String
        var authorization: String?
        var apiKey: String?
        var model: String?
        var stream: Bool
    }

    private struct State {
        var behaviour = Behaviour.ok
        var models: [String]
        var requests: [Recorded] = []
        /// The key a request must carry (Bearer, or Azure's `api-key`), when set.
        var key: String?
    }

    let name: String
    let port: Int
    private let state: Mutex<State>
    /// Requests hanging (``Behaviour/hang``) until the fake stops.
    private let hanging = Mutex<(released: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    private init(name: String, port: Int, models: [String]) {
        self.name = name
        self.port = port
        state = Mutex(State(models: models))
    }

    private func hang() async {
        await withCheckedContinuation { continuation in
            let released = hanging.withLock { hanging in
                if !hanging.released { hanging.waiting.append(continuation) }
                return hanging.released
            }
            if released { continuation.resume() }
        }
    }

    private func releaseHanging() {
        for continuation in hanging.withLock({ hanging in
            hanging.released = true
            defer { hanging.waiting = [] }
            return hanging.waiting
        }) { continuation.resume() }
    }

    var url: String { "http://127.0.0.1:\(port)" }

    func behave(_ behaviour: Behaviour) { state.withLock { $0.behaviour = behaviour } }
    func serve(models: [String]) { state.withLock { $0.models = models } }
    func require(key: String) { state.withLock { $0.key = key } }
    var requests: [Recorded] { state.withLock { $0.requests } }
    /// The chat and completion requests (not listings).
    var completions: [Recorded] { requests.filter { $0.method == "POST" } }

    /// Starts fakes on ephemeral loopback ports, runs `body`, and stops them.
    static func withRunning<T: Sendable>(
        _ names: [String], models: [String] = ["gpt-x"], _ body: @Sendable ([FakeUpstream]) async throws -> T
    ) async throws -> T {
        let ports = Mutex<[Int?]>(Array(repeating: nil, count: names.count))
        let fakes = Mutex<[FakeUpstream?]>(Array(repeating: nil, count: names.count))
        var logger = Logger(label: "fake-upstream")
        logger.logLevel = .critical
        let apps = names.indices.map { index in
            Application(
                responder: CallbackResponder<BasicRequestContext> { request, _ in
                    try await fakes.withLock { $0[index] }!.respond(request)
                },
                configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { channel in ports.withLock { $0[index] = channel.localAddress?.port } },
                logger: logger)
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            for app in apps { group.addTask { try await app.run() } }
            var bound: [Int] = []
            for _ in 0..<1000 {
                if case let all = ports.withLock({ $0 }), all.allSatisfy({ $0 != nil }) {
                    bound = all.map { $0! }
                    break
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            let made = names.indices.map { FakeUpstream(name: names[$0], port: bound[$0], models: models) }
            fakes.withLock { $0 = made }
            let result: Result<T, any Error>
            do {
                result = .success(try await body(made))
            } catch {
                result = .failure(error)
            }
            for fake in made { fake.releaseHanging() }
            group.cancelAll()
            return try result.get()
        }
    }

    private func respond(_ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 1 << 20)
        let json = (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any]
        let path = request.uri.path
        let recorded = Recorded(
            method: request.method.rawValue, path: path, query: request.uri.query ?? "", authorization: request.headers[.authorization],
            apiKey: request.headers[HTTPField.Name("api-key")!], model: json?["model"] as? String, stream: json?["stream"] as? Bool == true)
        let (behaviour, models, key) = state.withLock { state in
            state.requests.append(recorded)
            return (state.behaviour, state.models, state.key)
        }
        if let key, recorded.authorization != "Bearer \(key)" && recorded.apiKey != key {
            return Self.json(["error": ["message": "invalid key", "type": "auth"]], status: .unauthorized)
        }
        if request.method == .get {
            // Listings answer whatever the behaviour, except an outage.
            if case .status(let code) = behaviour { return Self.json(["error": ["message": "down"]], status: .init(code: code)) }
            if path == "/api/tags" { return Self.json(["models": models.map { ["name": $0] }]) }
            return Self.json(["object": "list", "data": models.map { ["id": $0, "object": "model"] }])
        }
        switch behaviour {
        case .ok, .cut:
            break
        case .status(let code):
            return Self.json(["error": ["message": "\(name) failed on purpose", "type": "server_error"]], status: .init(code: code))
        case .rateLimited(let retry):
            var response = Self.json(["error": ["message": "\(name) is rate limited", "type": "rate_limit"]], status: .tooManyRequests)
            response.headers[.retryAfter] = retry
            return response
        case .hang:
            await hang()
            throw CancellationError()
        }
        let model = recorded.model ?? "none"
        guard recorded.stream else {
            return Self.json([
                "id": "chatcmpl-\(name)", "object": "chat.completion", "model": model,
                "choices": [["index": 0, "message": ["role": "assistant", "content": "from \(name)"], "finish_reason": "stop"]],
                "usage": ["prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10],
            ])
        }
        let cut = behaviour == .cut
        let name = self.name
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream"],
            body: ResponseBody { writer in
                for word in ["from", " ", name] {
                    let chunk: [String: Any] = [
                        "id": "chatcmpl-\(name)", "object": "chat.completion.chunk", "model": model,
                        "choices": [["index": 0, "delta": ["content": word]]],
                    ]
                    try await writer.write(
                        ByteBuffer(string: "data: \(String(decoding: try JSONSerialization.data(withJSONObject: chunk), as: UTF8.self))\n\n"))
                    if cut { throw CancellationError() }
                }
                let usage: [String: Any] = [
                    "object": "chat.completion.chunk", "model": model, "choices": [], "usage": ["prompt_tokens": 7, "completion_tokens": 3],
                ]
                try await writer.write(
                    ByteBuffer(
                        string: "data: \(String(decoding: try JSONSerialization.data(withJSONObject: usage), as: UTF8.self))\n\ndata: [DONE]\n\n"))
                try await writer.finish(nil)
            })
    }

    private static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
