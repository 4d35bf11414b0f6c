import FakeHub
import Foundation
import ModeldAPI
import ModeldClient
import Testing

@testable import Daemon

/// HTTPS through the production start-up (docs/tls.md), with a certificate a private CA signed, as an organisation's
/// own CA would: `ModeldClient` (libcurl, HTTP/2 by ALPN) trusts the CA it is given and nothing else. The command-line
/// clients, plain HTTP on the port, HTTP/1.1 and reloads are in Tests/Hostile/test_tls.py.
@Suite("HTTPS")
struct TLSTests {
    @Test("the management API over HTTPS with a CA-signed certificate; without the CA the client says to pass --cacert")
    func managementAPIOverHTTPS() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let certificates = try await TestCertificates.generate(in: root)
        let daemon = try await TestDaemon(environment: [
            "MODELD_TLS_CERT": certificates.serverCertificate, "MODELD_TLS_KEY": certificates.serverKey,
        ])
        #expect(daemon.context.tls?.certificatePath == certificates.serverCertificate)
        try await daemon.serve { client in
            let url = "https://localhost:\(client.port)"
            let trusted = try ModeldClient(endpoint: DaemonEndpoint(baseURL: url, caCertificates: certificates.caBundle))
            #expect(try await trusted.health().status == "ok")
            let runs: [RunSummary] = try await trusted.call("GET", "/api/v1/models/running")
            #expect(runs.isEmpty)
            let missing: ClientError = try await #require(throws: ClientError.self) {
                try await trusted.call("GET", "/api/v1/models/running/none", as: RunSummary.self)
            }
            #expect(missing.kind == .api && missing.code == 404)

            for bundle in [certificates.otherCABundle, nil] {
                let untrusted = try ModeldClient(endpoint: DaemonEndpoint(baseURL: url, caCertificates: bundle))
                let error = try await #require(throws: ClientError.self) { try await untrusted.models() }
                #expect(error.kind == .unreachable && error.message.contains("not trusted") && error.message.contains("--cacert"), "\(error)")
            }
        }
    }
}
