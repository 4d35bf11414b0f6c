import FakeHub
import Foundation
import ModeldAPI
import Testing
import Transfer

@testable import Catalog
@testable import Daemon
@testable import Downloads
@testable import Hubs
@testable import ModelStore

@Suite("Hub connections: unresolvable hosts, private CAs")
struct HubConnectionTests {
    /// `.invalid` never resolves (RFC 6761): the lookup fails at the local resolver and nothing else leaves the
    /// machine.
    static let unresolvable = "http://nonexistent.invalid"

    @Test("a failed DNS lookup is reported as one, and a reused handle fails the same way again")
    func reusedHandleAfterDNSFailure() throws {
        let download = try CurlDownload()
        for _ in 0..<3 {
            let error = try #require(throws: CurlError.self) {
                _ = try download.perform(DownloadRequest(url: Self.unresolvable + "/api/models/a/b")) { _ in
                    .receive
                } onData: { _ in
                    true
                }
            }
            #expect(error.message == "cannot resolve host nonexistent.invalid (DNS lookup failed)")
            #expect(error.isTransient)
        }
    }

    @Test("a refused connection and a silent server are named with their host and port, and are transient")
    func transferFailureMessages() throws {
        let download = try CurlDownload()
        func failure(_ url: String) throws -> CurlError {
            try #require(throws: CurlError.self) {
                _ = try download.perform(DownloadRequest(url: url, stallTimeout: .seconds(1))) { _ in
                    .receive
                } onData: { _ in
                    true
                }
            }
        }
        // Bound but not listening: a connection is refused, and the port stays ours meanwhile.
        let closed = try LoopbackSocket(listening: false)
        let refused = try failure("http://127.0.0.1:\(closed.port)/x")
        #expect(refused.message == "cannot connect to 127.0.0.1 port \(closed.port): Connection refused")
        #expect(refused.isTransient)
        // Listening but never accepting: the kernel completes the handshake, and no reply ever comes.
        let silent = try LoopbackSocket(listening: true)
        let stalled = try failure("http://127.0.0.1:\(silent.port)/x")
        #expect(stalled.message.hasPrefix("timed out talking to 127.0.0.1: "), "\(stalled.message)")
        #expect(stalled.isTransient)
    }

    @Test("a hub whose host does not resolve: retried like a refused connection, then one message naming the host")
    func unresolvableHub() async throws {
        try await FakeHub.withRunning { hub in
            hub.addModelScopeRepo("acme/tiny", commits: [tinyCommit()])
            let logs = LogCollector()
            let policy = RetryPolicy(maxAttempts: 3, delays: [.milliseconds(10)])
            try await withPullService(
                hub: hub, logs: logs,
                configure: {
                    $0.huggingFace = HuggingFaceSettings(endpoint: Self.unresolvable)
                    $0.retry = policy
                }
            ) { harness in
                let error = try #require(await harness.pullError("a/b"))
                #expect(error.code == .network)
                #expect(error.message.contains("cannot resolve host nonexistent.invalid (DNS lookup failed)"), "\(error.message)")
                #expect(error.message.contains("after 3 tries"), "\(error.message)")
                #expect(!error.message.contains("bad argument"), "\(error.message)")
                let retries = logs.all.filter { $0.contains("retrying a hub request") }
                #expect(retries.count == policy.maxAttempts - 1, "\(logs.all)")
                #expect(retries.allSatisfy { $0.contains("cannot resolve host nonexistent.invalid") }, "\(retries)")
                // The handles that failed the lookups serve the next pull (another hub, same pool).
                try await harness.pull("acme/tiny", source: .modelscope)
            }
        }
    }

    @Test(
        "a hub behind a private CA: refused at once without the CA; verified with ca_bundle or the curl, OpenSSL and requests variables, in that order"
    )
    func privateCA() async throws {
        let directory = try TemporaryDirectory()
        let certificates = try await TestCertificates.generate(in: directory.url)
        let ca = certificates.caBundle
        let other = certificates.otherCABundle
        let home = directory.url.path
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit(weights: testBytes(200_000, seed: 3))
            hub.addRepo("acme/tiny", commits: [commit])
            try await TLSFront.withRunning(certificates: certificates, backends: [hub.hubPort, hub.cdnPort]) { ports in
                hub.setPublicOrigins(hub: "https://localhost:\(ports[0])", cdn: "https://127.0.0.1:\(ports[1])")

                // The bundle the daemon's configuration picks, then a pull with it: nil, or why it failed.
                @Sendable func pull(flags: DaemonConfiguration.Flags = .init(), _ environment: [String: String]) async throws -> PullError? {
                    let configuration = try await DaemonConfiguration.resolve(flags: flags, environment: environment.merging(["HOME": home]) { $1 })
                    let logs = LogCollector()
                    let failure = Locked<PullError?>(nil)
                    try await withPullService(hub: hub, logs: logs, configure: { $0.caBundle = configuration.caBundle }) { harness in
                        guard let error = await harness.pullError("acme/tiny") else {
                            let report = try await harness.service.verify(source: .huggingface, repo: "acme/tiny", commit: "main")
                            // Every file but the .bin duplicate of the safetensors weights, which is not pulled.
                            #expect(report.isIntact && report.filesChecked == commit.files.count - 1)
                            return
                        }
                        failure.withLock { $0 = error }
                        #expect(!logs.all.contains { $0.contains("retrying") }, "a certificate that does not verify is not retried: \(logs.all)")
                    }
                    return failure.withLock { $0 }
                }

                @Sendable func isUntrusted(_ error: PullError?) -> Bool {
                    error?.code == .network && error?.message.contains("the TLS certificate of localhost is not trusted") == true
                }
                let untrusted = try #require(try await pull([:]))
                #expect(isUntrusted(untrusted), "\(untrusted.message)")
                #expect(untrusted.message.contains("ca_bundle"), "\(untrusted.message)")
                #expect(hub.requests.isEmpty, "no request got past the TLS handshake")

                for variable in DaemonConfiguration.caBundleVariables {
                    #expect(try await pull([variable: ca]) == nil, "\(variable)")
                }
                #expect(try await pull(["MODELD_CA_BUNDLE": ca]) == nil)
                #expect(try await pull(flags: .init(caBundle: ca), [:]) == nil)
                #expect(hub.requests.contains { $0.origin == .cdn }, "LFS files came from the CDN, through its TLS front")

                // Precedence: the setting over the variables, then CURL_CA_BUNDLE, SSL_CERT_FILE, REQUESTS_CA_BUNDLE.
                #expect(try await pull(["MODELD_CA_BUNDLE": ca, "CURL_CA_BUNDLE": other]) == nil)
                #expect(isUntrusted(try await pull(["MODELD_CA_BUNDLE": other, "CURL_CA_BUNDLE": ca])))
                #expect(try await pull(["CURL_CA_BUNDLE": ca, "SSL_CERT_FILE": other, "REQUESTS_CA_BUNDLE": other]) == nil)
                #expect(isUntrusted(try await pull(["CURL_CA_BUNDLE": other, "SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": ca])))
                #expect(try await pull(["SSL_CERT_FILE": ca, "REQUESTS_CA_BUNDLE": other]) == nil)
                #expect(isUntrusted(try await pull(["SSL_CERT_FILE": other, "REQUESTS_CA_BUNDLE": ca])))
            }
        }
    }
}

/// A TCP socket bound to an ephemeral loopback port, closed when released.
private final class LoopbackSocket {
    let fd: Int32
    let port: Int

    init(listening: Bool) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard fd >= 0, bound, !listening || listen(fd, 8) == 0 else {
            if fd >= 0 { close(fd) }
            throw POSIXError(.EADDRNOTAVAIL)
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}
