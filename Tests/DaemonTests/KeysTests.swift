import Foundation
import ModeldAPI
import ModeldClient
import Testing

@Suite("API keys")
struct KeysTests {
    /// `curl` against the daemon's TCP port: status code and body.
    static func get(_ daemon: DaemonProcess, _ path: String, key: String? = nil) async throws -> (Int, String) {
        var arguments = ["-s", "-o", "/dev/stdout", "-w", "\n%{http_code}", "http://127.0.0.1:\(daemon.port)\(path)"]
        if let key { arguments += ["-H", "Authorization: Bearer \(key)"] }
        let result = try await runProcess(URL(filePath: "/usr/bin/curl"), arguments)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test("once a key exists, TCP needs one; scopes are enforced; the control socket stays trusted; revoked keys stop working")
    func keys() async throws {
        let daemon = try await DaemonProcess()
        do {
            #expect(try await Self.get(daemon, "/api/v1/models").0 == 200, "no keys yet: open on loopback")

            let admin = try await daemon.modelctl(["keys", "create", "--name", "ops", "--scope", "admin"])
            #expect(admin.status == 0, "\(admin.stderr)")
            let adminKey = String(admin.stdout.split(separator: "\n").last ?? "")
            #expect(adminKey.hasPrefix("mdk_") && adminKey.count == 52, "\(admin.stdout)")
            let inference = try await daemon.modelctl(["keys", "create", "--name", "app"])
            let inferenceKey = String(inference.stdout.split(separator: "\n").last ?? "")
            #expect(inferenceKey.hasPrefix("mdk_") && inferenceKey != adminKey)
            #expect(try await daemon.modelctl(["keys", "create", "--name", "app"]).status == 1, "duplicate names are refused")

            let (anonymous, anonymousBody) = try await Self.get(daemon, "/api/v1/models")
            #expect(anonymous == 401 && anonymousBody.contains("\"code\":401"), "\(anonymousBody)")
            #expect(try await Self.get(daemon, "/health").0 == 200)
            let (openAI, openAIBody) = try await Self.get(daemon, "/v1/models")
            #expect(openAI == 401 && openAIBody.contains("\"error\""), "\(openAIBody)")
            #expect(try await Self.get(daemon, "/v1/models", key: "mdk_wrong").0 == 401)
            #expect(try await Self.get(daemon, "/v1/models", key: inferenceKey).0 == 200)
            let (forbidden, forbiddenBody) = try await Self.get(daemon, "/api/v1/models", key: inferenceKey)
            #expect(forbidden == 403 && forbiddenBody.contains("needs an admin key"), "\(forbiddenBody)")
            #expect(try await Self.get(daemon, "/api/v1/models", key: adminKey).0 == 200)

            // modelctl over TCP with a key; the control socket needs none.
            let remote = try await runProcess(
                productsDirectory.appending(path: "modelctl"), ["list", "--url", "http://127.0.0.1:\(daemon.port)", "--api-key", adminKey],
                environment: ["HOME": daemon.root.path])
            #expect(remote.status == 0, "\(remote.stderr)")
            let listed = try await daemon.modelctl(["keys", "list", "--json"])
            let keys = try WireJSON.decoder().decode([KeyInfo].self, from: Data(listed.stdout.utf8))
            #expect(Set(keys.map(\.name)) == ["ops", "app"])
            #expect(keys.allSatisfy { $0.key == nil })
            // Use is recorded: the admin key was used over TCP above; nothing used "app" on /api.
            #expect(keys.first { $0.name == "ops" }?.lastUsedAt != nil)
            #expect(!listed.stdout.contains(adminKey) && !listed.stdout.contains(inferenceKey), "key values never listed")

            // A key limited to 2 requests a minute: the third is a 429 with Retry-After.
            let limited = try await daemon.modelctl(["keys", "create", "--name", "slow", "--rate", "2"])
            let limitedKey = String(limited.stdout.split(separator: "\n").last ?? "")
            #expect(try await Self.get(daemon, "/v1/models", key: limitedKey).0 == 200)
            #expect(try await Self.get(daemon, "/v1/models", key: limitedKey).0 == 200)
            let headers = try await runProcess(
                URL(filePath: "/usr/bin/curl"),
                ["-s", "-D", "-", "-o", "/dev/null", "-H", "Authorization: Bearer \(limitedKey)", "http://127.0.0.1:\(daemon.port)/v1/models"])
            #expect(headers.stdout.hasPrefix("HTTP/1.1 429"), "\(headers.stdout)")
            #expect(headers.stdout.lowercased().contains("retry-after: "), "\(headers.stdout)")

            #expect(try await daemon.modelctl(["keys", "revoke", "app"]).status == 0)
            #expect(try await Self.get(daemon, "/v1/models", key: inferenceKey).0 == 401)
            #expect(try await Self.get(daemon, "/v1/models", key: adminKey).0 == 200)
            // The store keeps only hashes.
            let database = try String(decoding: Data(contentsOf: daemon.root.appending(path: "modeld.sqlite")), as: UTF8.self)
            let wal = (try? Data(contentsOf: daemon.root.appending(path: "modeld.sqlite-wal"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
            #expect(!database.contains(adminKey) && !wal.contains(adminKey))
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }
}
