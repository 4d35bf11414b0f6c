import Crypto
import Foundation
import ModelText
import Transfer

/// The calls modeld makes to the shared Ollama server to bring models into it (docs/design/engine-launch.md, Ollama).
/// Blocking: call it from a dedicated thread.
package struct OllamaClient: Sendable {
    package var baseURL: String
    private let transfer: HTTPTransfer

    package init(port: Int) throws {
        baseURL = "http://127.0.0.1:\(port)"
        transfer = try HTTPTransfer()
    }

    /// `POST /api/pull`, following its NDJSON progress until `success`.
    /// - Parameter progress: each status line, for the run's log.
    /// - Throws: ``LaunchError`` with the server's `{"error": ...}` line, or on a transport failure.
    package func pull(_ name: String, progress: (String) -> Void) throws {
        let body = try JSONSerialization.data(withJSONObject: ["model": name, "stream": true])
        try streamNDJSON(path: "/api/pull", body: body, what: "pulling \(name) into Ollama", progress: progress)
    }

    /// Uploads a GGUF file as a blob unless Ollama has it, then creates `name` from it.
    /// - Parameters:
    ///   - sha256: the file's digest in hex; computed from the file when nil.
    /// - Throws: ``LaunchError`` when the file cannot be read, the upload is refused or creation fails.
    package func importGGUF(path: String, name: String, sha256: String?, progress: (String) -> Void) throws {
        let file = URL(filePath: path)
        let data: Data
        do {
            data = try Data(contentsOf: file, options: .alwaysMapped)
        } catch {
            throw LaunchError(code: .ollamaModel, message: "cannot read the GGUF file \(path)", cause: error)
        }
        let digest = sha256 ?? SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
        let blobURL = "\(baseURL)/api/blobs/sha256:\(digest)"
        let head = try send(HTTPRequest(method: "HEAD", url: blobURL), what: "checking the blob of \(name)")
        if head.status != 200 {
            progress("uploading \(file.lastPathComponent) (\(data.count) bytes) as sha256:\(digest)")
            let upload = try send(
                HTTPRequest(method: "POST", url: blobURL, body: data, stallTimeout: .seconds(120)),
                what: "uploading \(file.lastPathComponent) to Ollama")
            guard upload.status == 201 || upload.status == 200 else {
                throw LaunchError(
                    code: .ollamaModel,
                    message:
                        "Ollama refused the upload of \(path) (HTTP \(upload.status): \(String(decoding: upload.body, as: UTF8.self).prefix(200))); the file may be damaged: pull it again"
                )
            }
        }
        let fileName = file.lastPathComponent.hasSuffix(".gguf") ? file.lastPathComponent : "model.gguf"
        let files = [fileName: "sha256:\(digest)"]
        let body = try JSONSerialization.data(withJSONObject: ["model": name, "files": files, "stream": true] as [String: Any])
        try streamNDJSON(path: "/api/create", body: body, what: "creating \(name) in Ollama", progress: progress)
    }

    /// Asks Ollama to unload a model now (`keep_alive: 0`); best effort.
    package func unload(_ name: String) {
        guard let body = try? JSONSerialization.data(withJSONObject: ["model": name, "keep_alive": 0] as [String: Any]) else { return }
        _ = try? transfer.perform(
            HTTPRequest(
                method: "POST", url: "\(baseURL)/api/generate", headers: [("Content-Type", "application/json")], body: body,
                stallTimeout: .seconds(10)))
    }

    private func send(_ request: HTTPRequest, what: String) throws -> HTTPResponse {
        do {
            return try transfer.perform(request)
        } catch {
            throw LaunchError(code: .ollamaModel, message: "\(what) failed", cause: error)
        }
    }

    private func streamNDJSON(path: String, body: Data, what: String, progress: (String) -> Void) throws {
        var buffer = Data()
        var failure: String?
        var succeeded = false
        var lastStatus = ""
        func handle(_ line: Data) {
            guard !line.isEmpty, let object = try? JSONLimits.jsonObject(with: line) as? [String: Any] else { return }
            if let error = object["error"] as? String {
                failure = error
            } else if let status = object["status"] as? String {
                if status == "success" { succeeded = true }
                // Progress lines repeat their status with growing byte counts: log each status once.
                if status != lastStatus {
                    lastStatus = status
                    progress(status)
                }
            }
        }
        let request = HTTPRequest(
            method: "POST", url: "\(baseURL)\(path)", headers: [("Content-Type", "application/json")], body: body,
            stallTimeout: .seconds(300))
        let head: HTTPResponseHead
        do {
            head = try transfer.stream(request) { chunk in
                buffer.append(contentsOf: chunk)
                while let newline = buffer.firstIndex(of: 0x0A) {
                    handle(buffer[buffer.startIndex..<newline])
                    buffer.removeSubrange(buffer.startIndex...newline)
                }
                return true
            }
        } catch {
            throw LaunchError(code: .ollamaModel, message: "\(what) failed", cause: error)
        }
        handle(buffer)
        if let failure { throw LaunchError(code: .ollamaModel, message: "\(what) failed: Ollama says \"\(failure)\"") }
        guard head.status == 200, succeeded else {
            throw LaunchError(code: .ollamaModel, message: "\(what) failed: Ollama answered HTTP \(head.status) without success")
        }
    }
}
