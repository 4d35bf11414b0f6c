import Foundation
import Testing

@Suite("CORS, origins and host names")
struct OriginPolicyTests {
    /// A reply as curl saw it: status, lowercased header names with their values, body.
    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    /// `curl` against the daemon's TCP port with the given method and headers.
    static func request(
        _ daemon: DaemonProcess, _ method: String, _ path: String, headers: [String: String] = [:], body: String? = nil
    ) async throws -> Reply {
        var arguments = ["-s", "-D", "-", "-X", method, "http://127.0.0.1:\(daemon.port)\(path)"]
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { arguments += ["-H", "\(name): \(value)"] }
        if let body { arguments += ["--data-binary", body] }
        let result = try await runProcess(URL(filePath: "/usr/bin/curl"), arguments)
        let (head, rest) = result.stdout.split(separator: "\r\n\r\n", maxSplits: 1).map(String.init).pairOrEmpty
        var lines = head.split(separator: "\r\n")
        let status = lines.isEmpty ? 0 : Int(lines.removeFirst().split(separator: " ")[1]) ?? 0
        var fields: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Reply(status: status, headers: fields, body: rest)
    }

    @Test("allowed origins get preflights and CORS headers; others are refused before anything runs; own origin needs none")
    func origins() async throws {
        let daemon = try await DaemonProcess(extraEnvironment: ["MODELD_CORS_ORIGINS": "http://app.test:3000, https://ops.example.com/"])
        do {
            let preflight = try await Self.request(
                daemon, "OPTIONS", "/api/v1/models",
                headers: [
                    "Origin": "http://app.test:3000", "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                ])
            #expect(preflight.status == 204)
            #expect(preflight.headers["access-control-allow-origin"] == "http://app.test:3000")
            #expect(preflight.headers["access-control-allow-methods"]?.contains("POST") == true)
            #expect(preflight.headers["access-control-allow-headers"] == "Authorization, Content-Type, Last-Event-ID")
            #expect(preflight.headers["access-control-max-age"] == "600")
            #expect(preflight.headers["vary"] == "Origin")

            let refusedPreflight = try await Self.request(
                daemon, "OPTIONS", "/api/v1/models", headers: ["Origin": "http://evil.test", "Access-Control-Request-Method": "POST"])
            #expect(refusedPreflight.status == 403)
            #expect(refusedPreflight.headers["access-control-allow-origin"] == nil)

            let allowed = try await Self.request(daemon, "GET", "/api/v1/models", headers: ["Origin": "https://OPS.example.com"])
            #expect(allowed.status == 200)
            #expect(allowed.headers["access-control-allow-origin"] == "https://OPS.example.com")
            #expect(allowed.headers["access-control-expose-headers"] == "X-Request-Id")
            #expect(allowed.headers["x-request-id"] != nil)
            let allowedError = try await Self.request(daemon, "GET", "/api/v1/models/no-such-model:1b", headers: ["Origin": "http://app.test:3000"])
            #expect(
                allowedError.status == 404 && allowedError.headers["access-control-allow-origin"] == "http://app.test:3000",
                "error replies carry CORS too")

            // A "simple" cross-origin POST (no preflight) from another site: refused, and the key is not created.
            let forged = try await Self.request(
                daemon, "POST", "/api/v1/keys", headers: ["Origin": "http://evil.test", "Content-Type": "text/plain"], body: #"{"name":"forged"}"#)
            #expect(forged.status == 403 && forged.body.contains("--cors-origin"), "\(forged.body)")
            let openAI = try await Self.request(
                daemon, "POST", "/v1/chat/completions", headers: ["Origin": "null", "Content-Type": "text/plain"], body: "{}")
            #expect(openAI.status == 403 && openAI.body.contains("\"error\""), "\(openAI.body)")
            let keys = try await daemon.modelctl(["keys", "list", "--json"])
            #expect(keys.status == 0 && !keys.stdout.contains("forged"), "\(keys.stdout)")

            // The daemon's own pages (the console) send their own origin.
            let own = try await Self.request(daemon, "GET", "/api/v1/models", headers: ["Origin": "http://127.0.0.1:\(daemon.port)"])
            #expect(own.status == 200 && own.headers["access-control-allow-origin"] == nil)
            // Without an Origin (curl, SDKs) nothing changes.
            #expect(try await Self.request(daemon, "GET", "/health").status == 200)
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }

    @Test("while no key exists, a Host that is not the daemon's is refused (DNS rebinding); allowed_hosts and keys lift it")
    func hostNames() async throws {
        let daemon = try await DaemonProcess(extraEnvironment: ["MODELD_ALLOWED_HOSTS": "models.internal"])
        do {
            let rebound = try await Self.request(daemon, "GET", "/api/v1/models", headers: ["Host": "attacker.example:\(daemon.port)"])
            #expect(rebound.status == 403 && rebound.body.contains("--allowed-host"), "\(rebound.body)")
            #expect(try await Self.request(daemon, "POST", "/v1/completions", headers: ["Host": "attacker.example"], body: "{}").status == 403)
            for host in ["localhost:\(daemon.port)", "127.0.0.1", "[::1]:\(daemon.port)", "models.internal", "MODELS.INTERNAL:80"] {
                #expect(try await Self.request(daemon, "GET", "/api/v1/models", headers: ["Host": host]).status == 200, "Host: \(host)")
            }
            // The control socket is not reachable by pages and is exempt.
            #expect(try await daemon.modelctl(["list"]).status == 0)

            let created = try await daemon.modelctl(["keys", "create", "--name", "ops", "--scope", "admin"])
            let key = String(created.stdout.split(separator: "\n").last ?? "")
            let withKey = try await Self.request(
                daemon, "GET", "/api/v1/models", headers: ["Host": "models.example.com", "Authorization": "Bearer \(key)"])
            #expect(withKey.status == 200, "once keys exist they decide: a proxy's name is fine")
            #expect(try await Self.request(daemon, "GET", "/api/v1/models", headers: ["Host": "models.example.com"]).status == 401)
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }

    @Test("a request for a ready run from a refused origin or host is not relayed to the engine")
    func relay() async throws {
        try await withFakeVLLMDaemon(environment: ["MODELD_CORS_ORIGINS": "*"]) { daemon, requestLog in
            let started = try await daemon.modelctl(["start", "acme/tiny", "--engine", "vllm", "--wait"])
            #expect(started.status == 0, "\(started.stderr)")
            let body = #"{"model":"acme/tiny","messages":[{"role":"user","content":"hi"}]}"#
            let plain = try await Self.request(daemon, "POST", "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: body)
            #expect(plain.status == 200, "\(plain.body)")
            let any = try await Self.request(
                daemon, "POST", "/v1/chat/completions", headers: ["Content-Type": "application/json", "Origin": "http://anything.test"], body: body)
            #expect(any.status == 200 && any.headers["access-control-allow-origin"] == "*", "cors_origins * allows any page")
            let relayedBefore = (try? String(contentsOfFile: requestLog, encoding: .utf8))?.split(separator: "\n").count ?? 0
            let rebound = try await Self.request(
                daemon, "POST", "/v1/chat/completions", headers: ["Content-Type": "application/json", "Host": "attacker.example"], body: body)
            #expect(rebound.status == 403, "\(rebound.body)")
            let relayedAfter = (try? String(contentsOfFile: requestLog, encoding: .utf8))?.split(separator: "\n").count ?? 0
            #expect(relayedAfter == relayedBefore, "the engine never saw the refused request")
        }
    }
}

extension Array where Element == String {
    /// The first two elements, the second empty when missing.
    fileprivate var pairOrEmpty: (String, String) { (first ?? "", count > 1 ? self[1] : "") }
}
