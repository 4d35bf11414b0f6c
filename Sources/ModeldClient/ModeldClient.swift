import FoundationEssentials
import Glibc
import ModeldAPI
import Transfer

/// How to reach the daemon: a TCP base URL, optionally through a unix socket.
package struct DaemonEndpoint: Sendable, CustomStringConvertible {
    package var baseURL: String
    package var unixSocketPath: String?
    /// Sent as `Authorization: Bearer <key>` (TCP only; the control socket needs none).
    package var apiKey: String?
    /// CA certificates (PEM) that verify an `https://` daemon, such as its own self-signed certificate; nil for
    /// the system's bundle.
    package var caCertificates: String?

    package init(baseURL: String, unixSocketPath: String? = nil, apiKey: String? = nil, caCertificates: String? = nil) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        self.baseURL = base
        self.unixSocketPath = unixSocketPath
        self.apiKey = apiKey
        self.caCertificates = caCertificates
    }

    /// The authorization header, when there is a key and the transport is TCP.
    var authorization: [(String, String)] {
        guard unixSocketPath == nil, let apiKey, !apiKey.isEmpty else { return [] }
        return [("Authorization", "Bearer \(apiKey)")]
    }

    package var description: String { unixSocketPath.map { "unix:\($0)" } ?? baseURL }
}

/// A failure talking to the daemon, phrased for the person at the terminal.
package struct ClientError: Error, CustomStringConvertible {
    package enum Kind: Sendable { case unreachable, api, protocolError }
    package var kind: Kind
    /// The envelope's `code` (HTTP-like) for API errors.
    package var code: Int?
    package var message: String

    package init(kind: Kind, code: Int? = nil, message: String) {
        self.kind = kind
        self.code = code
        self.message = message
    }

    package var description: String { message }
}

/// A small client of the management API, used by modelctl (and by tests as any web client would).
package struct ModeldClient: Sendable {
    package var endpoint: DaemonEndpoint
    private let transfer: HTTPTransfer

    package init(endpoint: DaemonEndpoint) throws {
        self.endpoint = endpoint
        self.transfer = try HTTPTransfer(caBundle: endpoint.caCertificates)
    }

    /// GETs or POSTs an endpoint and unwraps its envelope.
    package func call<Payload: Codable & Sendable>(
        _ method: String, _ path: String, body: (some Encodable & Sendable)? = EmptyPayload?.none,
        as: Payload.Type = Payload.self
    ) async throws -> Payload {
        var headers = [("Accept", "application/json")] + endpoint.authorization
        var bodyData: Data?
        if let body {
            bodyData = try WireJSON.encoder().encode(body)
            headers.append(("Content-Type", "application/json"))
        }
        let request = HTTPRequest(
            method: method, url: endpoint.baseURL + path, headers: headers, body: bodyData,
            unixSocketPath: endpoint.unixSocketPath)
        let response: HTTPResponse
        do {
            response = try await transfer.perform(request)
        } catch let error as CurlError {
            throw ClientError(
                kind: .unreachable,
                message: "cannot reach modeld at \(endpoint): \(error.message) (\(Self.hint(error)))")
        }
        return try Self.unwrap(response, as: Payload.self, from: "\(endpoint)\(path)")
    }

    /// POSTs a JSON body and hands each line of the NDJSON reply to `onLine` (return false to stop).
    /// - Throws: ``ClientError`` when the daemon is unreachable or answers with an error envelope.
    package func streamLines(
        _ path: String, body: some Encodable & Sendable, onLine: @escaping @Sendable (Data) -> Bool
    ) async throws {
        let request = HTTPRequest(
            method: "POST", url: endpoint.baseURL + path,
            headers: [("Accept", "application/x-ndjson"), ("Content-Type", "application/json")] + endpoint.authorization,
            body: try WireJSON.encoder().encode(body), unixSocketPath: endpoint.unixSocketPath,
            stallTimeout: .seconds(600))
        let transfer = self.transfer
        let endpoint = self.endpoint
        try await onThread {
            var pending = Data()
            var errorBody = Data()
            var status = 0
            let head: HTTPResponseHead
            do {
                head = try transfer.stream(request) { chunk in
                    pending.append(contentsOf: chunk)
                    while let newline = pending.firstIndex(of: 0x0A) {
                        let line = pending[pending.startIndex..<newline]
                        pending = Data(pending[pending.index(after: newline)...])
                        if line.first == UInt8(ascii: "{") && line.contains(UInt8(ascii: "\"")) && status == 0 {
                            // The first line decides: an error envelope or a stream of events.
                            if let envelope = try? WireJSON.decoder().decode(Envelope<EmptyPayload>.self, from: line), envelope.code != 200 {
                                errorBody = Data(line)
                                return false
                            }
                            status = 200
                        }
                        if !onLine(Data(line)) { return false }
                    }
                    return true
                }
            } catch let error as CurlError {
                throw ClientError(kind: .unreachable, message: "cannot reach modeld at \(endpoint): \(error.message)")
            }
            if head.status != 200 {
                throw Self.failure(status: head.status, body: errorBody.isEmpty ? pending : errorBody, from: "\(endpoint)\(path)")
            }
        }
    }

    /// GETs a streaming text endpoint and hands each line to `onLine` (return false to stop).
    package func streamText(_ path: String, onLine: @escaping @Sendable (String) -> Bool) async throws {
        let request = HTTPRequest(
            url: endpoint.baseURL + path, headers: endpoint.authorization, unixSocketPath: endpoint.unixSocketPath,
            stallTimeout: .seconds(86_400))
        let transfer = self.transfer
        let endpoint = self.endpoint
        try await onThread {
            var pending = Data()
            let head: HTTPResponseHead
            do {
                head = try transfer.stream(request) { chunk in
                    pending.append(contentsOf: chunk)
                    while let newline = pending.firstIndex(of: 0x0A) {
                        let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                        pending = Data(pending[pending.index(after: newline)...])
                        if !onLine(line) { return false }
                    }
                    return true
                }
            } catch let error as CurlError {
                throw ClientError(kind: .unreachable, message: "cannot reach modeld at \(endpoint): \(error.message)")
            }
            if head.status != 200 {
                throw Self.failure(status: head.status, body: pending, from: "\(endpoint)\(path)")
            }
        }
    }

    /// POSTs a file as the request body, streamed from disk, and unwraps the envelope of the reply.
    /// - Throws: ``ClientError`` when the daemon is unreachable or answers with an error envelope.
    package func upload<Payload: Codable & Sendable>(
        _ path: String, file: String, contentType: String = "application/octet-stream", as: Payload.Type = Payload.self
    ) async throws -> Payload {
        let request = HTTPRequest(
            method: "POST", url: endpoint.baseURL + path,
            headers: [("Accept", "application/json"), ("Content-Type", contentType)] + endpoint.authorization,
            bodyFile: file, unixSocketPath: endpoint.unixSocketPath, stallTimeout: .seconds(600))
        let response: HTTPResponse
        do {
            response = try await transfer.perform(request)
        } catch let error as CurlError {
            throw ClientError(kind: .unreachable, message: "cannot send \(file) to modeld at \(endpoint): \(error.message)")
        }
        return try Self.unwrap(response, as: Payload.self, from: "\(endpoint)\(path)")
    }

    /// GETs an endpoint whose reply is a file (an archive) and writes it to `destination` as it arrives: first
    /// into `destination.partial`, renamed into place only when the reply is complete.
    /// - Returns: the reply's headers.
    /// - Throws: ``ClientError``: an error envelope, a cut transfer, or a file that cannot be written.
    @discardableResult
    package func download(_ path: String, to destination: String) async throws -> HTTPResponseHead {
        let request = HTTPRequest(
            url: endpoint.baseURL + path, headers: endpoint.authorization, unixSocketPath: endpoint.unixSocketPath,
            stallTimeout: .seconds(600))
        let transfer = self.transfer
        let endpoint = self.endpoint
        return try await onThread {
            let partial = destination + ".partial"
            let fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else {
                throw ClientError(kind: .api, message: "cannot write \(partial): \(String(cString: strerror(errno)))")
            }
            var keep = false
            defer {
                close(fd)
                if !keep { unlink(partial) }
            }
            var status = 0
            var errorBody = Data()
            var writeError: String?
            let head: HTTPResponseHead
            do {
                head = try transfer.stream(request, onHead: { status = $0.status }) { chunk in
                    guard status == 200 else {
                        errorBody.append(contentsOf: chunk)
                        return errorBody.count < 1 << 20
                    }
                    var done = 0
                    while done < chunk.count {
                        let wrote = write(fd, chunk.baseAddress! + done, chunk.count - done)
                        if wrote < 0 {
                            if errno == EINTR { continue }
                            writeError = String(cString: strerror(errno))
                            return false
                        }
                        done += wrote
                    }
                    return true
                }
            } catch let error as CurlError {
                guard status != 0 else {
                    throw ClientError(kind: .unreachable, message: "cannot reach modeld at \(endpoint): \(error.message)")
                }
                throw ClientError(kind: .api, message: "the reply from modeld was cut off (\(error.message)); its log says why")
            }
            if let writeError { throw ClientError(kind: .api, message: "cannot write \(partial): \(writeError)") }
            guard head.status == 200 else {
                throw Self.failure(status: head.status, body: errorBody, from: "\(endpoint)\(path)")
            }
            guard fsync(fd) == 0, rename(partial, destination) == 0 else {
                throw ClientError(kind: .api, message: "cannot write \(destination): \(String(cString: strerror(errno)))")
            }
            keep = true
            return head
        }
    }

    /// Decodes an envelope reply, turning an error envelope into a ``ClientError``.
    private static func unwrap<Payload: Codable & Sendable>(_ response: HTTPResponse, as: Payload.Type, from what: String) throws -> Payload {
        let envelope: Envelope<Payload>
        do {
            envelope = try WireJSON.decoder().decode(Envelope<Payload>.self, from: response.body)
        } catch {
            // An error envelope has null data whatever the payload type: decode it on its own.
            if let failure = try? WireJSON.decoder().decode(Envelope<EmptyPayload>.self, from: response.body), failure.code != 200 {
                throw ClientError(kind: .api, code: failure.code, message: failure.msg)
            }
            throw ClientError(kind: .protocolError, message: "unexpected reply from \(what) (HTTP \(response.status)): \(error)")
        }
        guard envelope.code == 200, let data = envelope.data else {
            throw ClientError(kind: .api, code: envelope.code, message: envelope.msg)
        }
        return data
    }

    /// The error for a streamed reply with a status other than 200: its error envelope, else the bare status.
    private static func failure(status: Int, body: Data, from what: String) -> ClientError {
        if let envelope = try? WireJSON.decoder().decode(Envelope<EmptyPayload>.self, from: body) {
            return ClientError(kind: .api, code: envelope.code, message: envelope.msg)
        }
        return ClientError(kind: .protocolError, code: status, message: "HTTP \(status) from \(what)")
    }

    /// What to try when the daemon cannot be reached.
    private static func hint(_ error: CurlError) -> String {
        error.isUntrustedCertificate
            ? "for a daemon with its own certificate, trust it with --cacert FILE or MODELD_CACERT"
            : "is the daemon running? start it with `modeld`"
    }

    package func health() async throws -> HealthInfo {
        let response: HTTPResponse
        do {
            response = try await transfer.perform(
                HTTPRequest(url: endpoint.baseURL + "/health", unixSocketPath: endpoint.unixSocketPath))
        } catch let error as CurlError {
            throw ClientError(kind: .unreachable, message: "cannot reach modeld at \(endpoint): \(error.message)")
        }
        return try WireJSON.decoder().decode(HealthInfo.self, from: response.body)
    }

    package func models() async throws -> [CatalogModelInfo] {
        try await call("GET", "/api/v1/models")
    }
}
