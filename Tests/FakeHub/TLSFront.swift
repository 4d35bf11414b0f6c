import Foundation

/// A throwaway private CA and a server certificate it signed for `127.0.0.1` and `localhost`, made with the
/// `openssl` command at test time (P-256 keys, valid for a day), plus a second CA that signed nothing.
package struct TestCertificates: Sendable {
    /// The CA that signed the server certificate (PEM).
    package let caBundle: String
    /// A CA that did not sign it: a bundle with only this one must not verify the server.
    package let otherCABundle: String
    package let serverCertificate: String
    package let serverKey: String

    /// Writes the CAs, the server's key and certificate into `directory`.
    package static func generate(in directory: URL) async throws -> TestCertificates {
        func path(_ name: String) -> String { directory.appending(path: name).path }
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try await openssl(["req", "-x509"] + ec + ["-keyout", path("ca.key"), "-out", path("ca.pem"), "-days", "1", "-subj", "/CN=modeld test CA"])
        try await openssl(
            ["req", "-x509"] + ec + ["-keyout", path("other-ca.key"), "-out", path("other-ca.pem"), "-days", "1", "-subj", "/CN=modeld other CA"])
        try await openssl(["req"] + ec + ["-keyout", path("server.key"), "-out", path("server.csr"), "-subj", "/CN=localhost"])
        let extensions = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        try Data(extensions.utf8).write(to: directory.appending(path: "server.ext"))
        try await openssl([
            "x509", "-req", "-in", path("server.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"), "-CAcreateserial",
            "-out", path("server.pem"), "-days", "1", "-extfile", path("server.ext"),
        ])
        return TestCertificates(
            caBundle: path("ca.pem"), otherCABundle: path("other-ca.pem"), serverCertificate: path("server.pem"),
            serverKey: path("server.key"))
    }

    private static func openssl(_ arguments: [String]) async throws {
        let process = Process()
        process.executableURL = URL(filePath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try await runToExit(process)
        guard process.terminationStatus == 0 else {
            let message = String(decoding: (try? errors.fileHandleForReading.readToEnd()) ?? Data(), as: UTF8.self)
            throw TLSFrontError("openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(message)")
        }
    }
}

/// A TLS front on loopback before plain-HTTP servers: `Tests/TLSFront/tls_front.py`, a child process that
/// terminates TLS with the given certificate and relays the bytes to each backend port unchanged.
///
/// ```swift
/// try await TLSFront.withRunning(certificates: certificates, backends: [hub.hubPort, hub.cdnPort]) { ports in
///     hub.setPublicOrigins(hub: "https://localhost:\(ports[0])", cdn: "https://127.0.0.1:\(ports[1])")
/// }
/// ```
package enum TLSFront {
    /// Starts a front for each backend port, runs `body` with the fronts' ports (in the same order), and
    /// stops them (closing its standard input ends the script).
    package static func withRunning<T: Sendable>(
        certificates: TestCertificates, backends: [Int], _ body: @Sendable ([Int]) async throws -> T
    ) async throws -> T {
        let script = URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appending(path: "TLSFront/tls_front.py")
        let process = Process()
        process.executableURL = URL(filePath: "/usr/bin/env")
        process.arguments = ["python3", script.path, certificates.serverCertificate, certificates.serverKey] + backends.map(String.init)
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        let exited = AsyncStream<Void>.makeStream()
        process.terminationHandler = { _ in exited.continuation.finish() }
        try process.run()
        func stop() async {
            try? input.fileHandleForWriting.close()
            for await _ in exited.stream {}
        }
        do {
            let line = await firstLine(of: output.fileHandleForReading)
            let ports = line.split(separator: " ").dropFirst().compactMap { Int($0) }
            guard line.hasPrefix("ports "), ports.count == backends.count else {
                throw TLSFrontError("the TLS front did not start (it printed \"\(line)\"); it needs python3")
            }
            let result = try await body(ports)
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }

    /// The first line a child writes (empty if it exits first), read on a thread of its own.
    private static func firstLine(of handle: FileHandle) async -> String {
        await withCheckedContinuation { continuation in
            Thread {
                var data = Data()
                forEachChunk(of: handle) { chunk in
                    data.append(chunk)
                    return !data.contains(0x0A)
                }
                let line = data.split(separator: 0x0A).first.map { String(decoding: $0, as: UTF8.self) } ?? ""
                continuation.resume(returning: line)
            }.start()
        }
    }
}

/// The TLS front or the certificates could not be set up.
package struct TLSFrontError: Error, CustomStringConvertible {
    package let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a process and waits for it to exit without blocking a thread of the cooperative pool.
private func runToExit(_ process: Process) async throws {
    let exited = AsyncStream<Void>.makeStream()
    process.terminationHandler = { _ in exited.continuation.finish() }
    try process.run()
    for await _ in exited.stream {}
}
