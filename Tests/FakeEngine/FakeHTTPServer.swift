import Crypto
import Foundation
import Synchronization

/// A plain POSIX-socket HTTP/1.1 server (one thread per connection, `Connection: close`) answering the
/// endpoints the supervisor and the tests use.
final class FakeHTTPServer: Sendable {
    let listener: Int32
    let role: FakeRole
    let behaviour: FakeBehaviour

    private struct OllamaState {
        var models: [String] = []
        var blobs: Set<String> = []
    }

    private let ollama = Mutex(OllamaState())

    init(port: Int, role: FakeRole, behaviour: FakeBehaviour) throws {
        self.role = role
        self.behaviour = behaviour
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 64) == 0 else {
            let message = "fake-engine: cannot listen on 127.0.0.1:\(port): \(String(cString: strerror(errno)))\n"
            FileHandle.standardError.write(Data(message.utf8))
            exit(4)
        }
    }

    func serveForever() -> Never {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 { continue }
            _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
            let thread = Thread { [self] in handle(connection) }
            thread.start()
        }
    }

    private func handle(_ connection: Int32) {
        defer { close(connection) }
        guard let request = readRequest(connection) else { return }
        respond(to: request, on: connection)
    }

    struct Request {
        var method: String
        var path: String
        var body: Data
        /// The W3C trace context the client sent, if any.
        var traceparent: String?
    }

    private func readRequest(_ connection: Int32) -> Request? {
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Range<Data.Index>?
        while headerEnd == nil {
            let count = read(connection, &buffer, buffer.count)
            if count <= 0 { return nil }
            data.append(contentsOf: buffer[0..<count])
            headerEnd = data.range(of: Data("\r\n\r\n".utf8))
        }
        let head = String(decoding: data[..<headerEnd!.lowerBound], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        let parts = lines.first?.split(separator: " ") ?? []
        guard parts.count >= 2 else { return nil }
        var length = 0
        var traceparent: String?
        for line in lines.dropFirst() {
            let pieces = line.split(separator: ":", maxSplits: 1)
            guard pieces.count == 2 else { continue }
            switch pieces[0].lowercased() {
            case "content-length": length = Int(pieces[1].trimmingCharacters(in: .whitespaces)) ?? 0
            case "traceparent": traceparent = pieces[1].trimmingCharacters(in: .whitespaces)
            default: break
            }
        }
        var body = Data(data[headerEnd!.upperBound...])
        while body.count < length {
            let count = read(connection, &buffer, min(buffer.count, length - body.count))
            if count <= 0 { return nil }
            body.append(contentsOf: buffer[0..<count])
        }
        return Request(method: String(parts[0]), path: String(parts[1]), body: body, traceparent: traceparent)
    }

    private func send(_ connection: Int32, status: Int, contentType: String = "application/json", body: Data, head: Bool = false) {
        let reason = [200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"][status] ?? "Status"
        var response = Data(
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n".utf8)
        if !head { response.append(body) }
        writeAll(connection, response)
    }

    private func send(_ connection: Int32, status: Int, json: Any) {
        send(connection, status: status, body: (try? JSONSerialization.data(withJSONObject: json)) ?? Data())
    }

    /// An NDJSON stream: head without a length, then line by line, ended by closing the connection.
    private func stream(_ connection: Int32, lines: [[String: Any]]) {
        writeAll(connection, Data("HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n".utf8))
        for line in lines {
            var data = (try? JSONSerialization.data(withJSONObject: line)) ?? Data()
            data.append(0x0A)
            writeAll(connection, data)
            usleep(5_000)
        }
    }

    /// A streamed chat completion: 30 SSE chunks 100 ms apart, then `[DONE]`. When the client goes away
    /// first, the request log (if any) gets the line `stream cancelled by the client`.
    private func streamChat(_ connection: Int32, model: String) {
        func chunk(_ delta: [String: Any], finish: String?) -> String {
            let object: [String: Any] = [
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": model,
                "choices": [["index": 0, "delta": delta, "finish_reason": finish as Any? ?? NSNull()]],
            ]
            return "data: " + String(decoding: (try? JSONSerialization.data(withJSONObject: object)) ?? Data(), as: UTF8.self) + "\n\n"
        }
        var events = ["HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"]
        events += (0..<30).map { _ in chunk(["content": "tick "], finish: nil) }
        events += [chunk([:], finish: "stop"), "data: [DONE]\n\n"]
        for event in events {
            let sent = Array(event.utf8).withUnsafeBytes { Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if let log = behaviour.requestLog { FakeEngine.appendLine("stream cancelled by the client", to: log) }
                return
            }
            usleep(100_000)
        }
    }

    private func writeAll(_ connection: Int32, _ data: Data) {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = write(connection, raw.baseAddress! + offset, raw.count - offset)
                if written <= 0 { return }
                offset += written
            }
        }
    }

    private func respond(to request: Request, on connection: Int32) {
        let path = request.path.split(separator: "?").first.map(String.init) ?? request.path
        if role.kind == .ollama {
            respondAsOllama(request, path: path, on: connection)
            return
        }
        switch (request.method, path) {
        case ("GET", "/health"):
            if behaviour.healthHangs {
                // Hold the connection without answering, like an engine stuck in its event loop.
                while true { sleep(60) }
            }
            send(connection, status: behaviour.isStarting ? 503 : 200, body: Data())
        case ("GET", "/v1/models"):
            send(
                connection, status: 200,
                json: ["object": "list", "data": [["id": role.servedName ?? "", "object": "model", "owned_by": role.kind.rawValue]]])
        case ("POST", "/v1/chat/completions") where role.kind == .vllm || role.kind == .sglang:
            chatCompletion(request, on: connection)
        case ("GET", "/get_model_info") where role.kind == .sglang:
            send(connection, status: 200, json: ["model_path": role.modelPath ?? "", "is_generation": true])
        default:
            send(connection, status: 404, json: ["error": "not found: \(request.method) \(path)"])
        }
    }

    /// A chat completion as vLLM answers one: a JSON instance of the `response_format` schema when there is
    /// one, else a fixed sentence. A "token" is four bytes of the reply; `max_tokens` cuts it (`length`).
    private func chatCompletion(_ request: Request, on connection: Int32) {
        if let log = behaviour.requestLog {
            FakeEngine.appendLine(String(decoding: request.body, as: UTF8.self), to: log)
        }
        if let log = behaviour.traceLog { FakeEngine.appendLine(request.traceparent ?? "-", to: log) }
        guard let body = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any] else {
            send(
                connection, status: 400,
                json: ["object": "error", "message": "the body is not a JSON object", "type": "BadRequestError", "code": 400])
            return
        }
        let model = body["model"] as? String ?? ""
        guard model == role.servedName else {
            send(
                connection, status: 404,
                json: ["object": "error", "message": "The model `\(model)` does not exist.", "type": "NotFoundError", "code": 404])
            return
        }
        var text = "A fake reply."
        if let format = body["response_format"] as? [String: Any], format["type"] as? String == "json_schema" {
            let schema = (format["json_schema"] as? [String: Any])?["schema"] ?? [:]
            let instance = SchemaInstance.make(schema)
            let data = (try? JSONSerialization.data(withJSONObject: instance, options: [.sortedKeys, .fragmentsAllowed])) ?? Data()
            text = String(decoding: data, as: UTF8.self)
        }
        var bytes = Array(text.utf8)
        var finish = "stop"
        if let limit = body["max_tokens"] as? Int, limit * 4 < bytes.count {
            bytes = Array(bytes.prefix(limit * 4))
            finish = "length"
        }
        text = String(decoding: bytes, as: UTF8.self)
        if body["stream"] as? Bool == true {
            streamChat(connection, model: model)
            return
        }
        if let count = behaviour.holdUntilLogged, let log = behaviour.requestLog {
            FakeEngine.waitForLines(count, in: log, timeout: 30)
        }
        if behaviour.replyDelay > 0 { Thread.sleep(forTimeInterval: behaviour.replyDelay) }
        let messages = body["messages"] as? [[String: Any]] ?? []
        let promptTokens = messages.reduce(0) { $0 + (($1["content"] as? String)?.split(separator: " ").count ?? 0) }
        let completionTokens = (bytes.count + 3) / 4
        send(
            connection, status: 200,
            json: [
                "id": "chatcmpl-fake", "object": "chat.completion", "created": Int(Date().timeIntervalSince1970), "model": model,
                "choices": [["index": 0, "message": ["role": "assistant", "content": text], "finish_reason": finish]],
                "usage": ["prompt_tokens": promptTokens, "completion_tokens": completionTokens, "total_tokens": promptTokens + completionTokens],
            ])
    }

    private func respondAsOllama(_ request: Request, path: String, on connection: Int32) {
        let body = (try? JSONSerialization.jsonObject(with: request.body)) as? [String: Any] ?? [:]
        switch (request.method, path) {
        case ("GET", "/"), ("HEAD", "/"):
            if behaviour.healthHangs { while true { sleep(60) } }
            send(
                connection, status: behaviour.isStarting ? 503 : 200, contentType: "text/plain; charset=utf-8", body: Data("Ollama is running".utf8),
                head: request.method == "HEAD")
        case ("GET", "/api/version"):
            send(connection, status: 200, json: ["version": "0.0.0-fake"])
        case ("GET", "/api/tags"):
            let models = ollama.withLock { $0.models }
            send(connection, status: 200, json: ["models": models.map { ["name": $0, "model": $0] }])
        case ("GET", "/v1/models"):
            let models = ollama.withLock { $0.models }
            send(connection, status: 200, json: ["object": "list", "data": models.map { ["id": $0, "object": "model", "owned_by": "library"] }])
        case ("POST", "/api/pull"):
            let name = body["model"] as? String ?? body["name"] as? String ?? ""
            if name.hasPrefix("missing") {
                stream(connection, lines: [["status": "pulling manifest"], ["error": "pull model manifest: file does not exist"]])
                return
            }
            let digest = "sha256:" + String(repeating: "ab", count: 32)
            stream(
                connection,
                lines: [
                    ["status": "pulling manifest"],
                    ["status": "pulling \(digest.prefix(19))", "digest": digest, "total": 1000, "completed": 0],
                    ["status": "pulling \(digest.prefix(19))", "digest": digest, "total": 1000, "completed": 1000],
                    ["status": "verifying sha256 digest"], ["status": "writing manifest"], ["status": "success"],
                ])
            ollama.withLock { state in if !state.models.contains(name) { state.models.append(name) } }
        case (let method, let blob) where blob.hasPrefix("/api/blobs/sha256:"):
            let digest = String(blob.dropFirst("/api/blobs/sha256:".count))
            if method == "HEAD" {
                let present = ollama.withLock { $0.blobs.contains(digest) }
                send(connection, status: present ? 200 : 404, body: Data(), head: true)
            } else if method == "POST" {
                let actual = SHA256.hash(data: request.body).map { String(format: "%02x", $0) }.joined()
                guard actual == digest else {
                    send(connection, status: 400, json: ["error": "digest mismatch, expected \"sha256:\(digest)\", got \"sha256:\(actual)\""])
                    return
                }
                _ = ollama.withLock { $0.blobs.insert(digest) }
                send(connection, status: 201, body: Data())
            } else {
                send(connection, status: 404, json: ["error": "not found"])
            }
        case ("POST", "/api/create"):
            let name = body["model"] as? String ?? ""
            let files = body["files"] as? [String: String] ?? [:]
            let missing = files.values.filter { value in !ollama.withLock { $0.blobs.contains(String(value.dropFirst(7))) } }
            if files.isEmpty || !missing.isEmpty {
                stream(connection, lines: [["error": "blob \(missing.first ?? "(none)") not found"]])
                return
            }
            stream(connection, lines: [["status": "parsing GGUF"], ["status": "writing manifest"], ["status": "success"]])
            ollama.withLock { state in if !state.models.contains(name) { state.models.append(name) } }
        case ("POST", "/api/generate"):
            send(connection, status: 200, json: ["model": body["model"] as? String ?? "", "done": true, "done_reason": "unload"])
        default:
            send(connection, status: 404, json: ["error": "not found: \(request.method) \(path)"])
        }
    }
}
