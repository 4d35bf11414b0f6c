import Foundation
import Testing

@Suite("The modeld and modelctl executables")
struct DaemonProcessTests {
    @Test("--help works for both executables")
    func help() async throws {
        let modeld = try await runProcess(productsDirectory.appending(path: "modeld"), ["--help"])
        #expect(modeld.status == 0)
        #expect(modeld.stdout.contains("USAGE: modeld"))
        let modelctl = try await runProcess(productsDirectory.appending(path: "modelctl"), ["--help"])
        #expect(modelctl.status == 0)
        #expect(modelctl.stdout.contains("USAGE: modelctl"))
    }

    @Test("a malformed catalog stops start-up with the exact location")
    func malformedCatalog() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-cat-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let catalog = root.appending(path: "catalog.json")
        let json = """
            {"models": [{"id": "a", "name": "A", "description": "d", "official_url": "https://a.example",
              "sizes": [{"size": "1b"}], "quantizations": [], "engines": ["builtin"], "formats": [], "default_engine": "builtin"}]}
            """
        try Data(json.utf8).write(to: catalog)
        let result = try await runProcess(
            productsDirectory.appending(path: "modeld"),
            ["--catalog", catalog.path, "--data-dir", root.appending(path: "data").path, "--listen", "127.0.0.1:0"],
            environment: ["HOME": root.path, "PATH": "/usr/bin:/bin"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("models[0].sizes[0].hf_repo: missing"), "stderr: \(result.stderr)")
    }

    @Test("modeld serves, modelctl lists, and SIGTERM stops the daemon cleanly")
    func serveAndStop() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-run-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let launch = try await ModeldLaunch(arguments: ["--data-dir", root.path], environment: ["HOME": root.path])
        let (process, port) = (launch.process, launch.port)
        defer { if process.isRunning { process.terminate() } }

        // Wait until it answers (bounded).
        var listed: (status: Int32, stdout: String, stderr: String)?
        for _ in 0..<100 {
            let result = try await runProcess(
                productsDirectory.appending(path: "modelctl"), ["list", "--catalog", "--json"],
                environment: ["MODELD_URL": "http://127.0.0.1:\(port)"])
            if result.status == 0 {
                listed = result
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let output = try #require(listed, "modeld never answered on port \(port)")
        let models = try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [[String: Any]]
        #expect(models?.contains { $0["id"] as? String == "qwen2.5" } == true)

        kill(process.processIdentifier, SIGTERM)
        try await waitForExit(process)
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        let log = launch.log
        #expect(log.contains("modeld stopped"), "log: \(log)")
        #expect(FileManager.default.fileExists(atPath: root.appending(path: "modeld.sqlite").path))
        for directory in ["huggingface/hub", "modelscope", "ollama", "logs", "tmp"] {
            #expect(FileManager.default.fileExists(atPath: root.appending(path: directory).path), "missing \(directory)")
        }
    }

    @Test("a non-loopback listen address is refused without --insecure-no-auth")
    func nonLoopbackRefused() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-nl-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        let result = try await runProcess(
            productsDirectory.appending(path: "modeld"), ["--data-dir", root.path, "--listen", "0.0.0.0:0"],
            environment: ["HOME": root.path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("--insecure-no-auth"), "\(result.stderr)")
    }

    @Test("modelctl reports an unreachable daemon with exit code 3")
    func unreachable() async throws {
        let port = try freeLoopbackPort()
        let result = try await runProcess(
            productsDirectory.appending(path: "modelctl"), ["list", "--url", "http://127.0.0.1:\(port)"], environment: [:])
        #expect(result.status == 3)
        #expect(result.stderr.contains("cannot reach modeld at http://127.0.0.1:\(port)"))
    }

    @Test("modeld engine --quantize names the quantizations it applies when given another")
    func bogusQuantization() async throws {
        let modeld = productsDirectory.appending(path: "modeld")
        for name in ["bogus", "q4_k_m"] {
            let result = try await runProcess(modeld, ["engine", "--model", "/nonexistent", "--quantize", name])
            #expect(result.status != 0)
            #expect(
                result.stderr.contains("--quantize: \"\(name)\" is not a quantization the engine applies on load (use q8_0 or q4_0)"),
                "\(result.stderr)")
        }
    }
}

/// A loopback TCP port that was free a moment ago (bound to port 0, then released).
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw POSIXError(.EADDRINUSE) }
    return Int(UInt16(bigEndian: address.sin_port))
}
