import Catalog
import FakeHub
import Foundation
import HTTPTypes
import HummingbirdTesting
import Logging
import ModelStore
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

@testable import Daemon

/// A data directory and daemon context in a temporary folder, prepared as `modeld serve` prepares them.
final class TestDaemon: Sendable {
    let root: URL
    let context: DaemonContext

    /// - Parameter now: the usage ledger's clock.
    init(catalogPath: String? = nil, environment: [String: String] = [:], now: @escaping @Sendable () -> Date = { Date() }) async throws {
        root = FileManager.default.temporaryDirectory.appending(path: "modeld-daemon-\(UUID().uuidString)", directoryHint: .isDirectory)
        context = try await DaemonStartup.prepare(
            flags: .init(listen: "127.0.0.1:0", dataDir: root.path, catalog: catalogPath),
            environment: environment.merging(["HOME": root.path, "MODELD_ENGINE_PORTS": enginePortBlock()]) { $1 }, logger: Logger(label: "test"),
            now: now)
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    /// Serves the daemon as `modeld serve` does (``DaemonStartup/services(_:sockets:notifier:signals:onReady:)``: the
    /// listeners on 127.0.0.1:0 and the control socket, with their connection guard, relay and router, the
    /// supervisor and the other services) and runs `body` with a client of its TCP listener once it is ready; then
    /// shuts it down gracefully, as SIGTERM would.
    func serve<Value: Sendable>(_ body: @Sendable (DaemonTestClient) async throws -> Value) async throws -> Value {
        let sockets = try DaemonStartup.listeningSockets(context)
        let port = try #require(sockets.first { $0.kind == .tcp }?.port)
        let (ready, readiness) = AsyncStream<Void>.makeStream()
        let group = await DaemonStartup.services(context, sockets: sockets, notifier: SystemdNotifier(), signals: []) {
            readiness.finish()
        }
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            for await _ in ready {}
            let client = DaemonTestClient(port: port)
            let result: Result<Value, any Error>
            do {
                result = .success(try await body(client))
            } catch {
                result = .failure(error)
            }
            try await client.shutdown()
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            return try result.get()
        }
    }
}

/// An HTTP/1.1 client of a daemon the test serves, on one keep-alive connection over loopback; its `execute` reads
/// like HummingbirdTesting's.
struct DaemonTestClient: Sendable {
    /// A whole reply.
    struct Response: Sendable {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: ByteBuffer
    }

    let port: Int
    private let client: TestClient

    init(port: Int) {
        self.port = port
        client = TestClient(host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(60)))
        client.connect()
    }

    /// Sends a request and runs `check` on its reply.
    @discardableResult
    func execute<Value>(
        uri: String, method: HTTPRequest.Method, headers: HTTPFields = [:], body: ByteBuffer? = nil,
        _ check: (Response) async throws -> Value
    ) async throws -> Value {
        let reply = try await client.execute(.init(uri, method: method, authority: "127.0.0.1:\(port)", headers: headers, body: body))
        return try await check(Response(status: reply.status, headers: reply.headers, body: reply.body ?? ByteBuffer()))
    }

    func shutdown() async throws { try await client.shutdown() }
}

/// Where SwiftPM put the built executables (`modeld`, `modelctl`), next to the test bundle.
let productsDirectory: URL = {
    var url = Bundle.main.bundleURL
    while !FileManager.default.fileExists(atPath: url.appending(path: "modeld").path), url.path != "/" {
        url.deleteLastPathComponent()
    }
    return url
}()

/// Runs an executable to completion on a dedicated thread, returning its exit status and output.
///
/// Tests run on Swift's small cooperative pool (two threads on two cores): blocking it in `waitUntilExit`
/// or a pipe read would starve every other test, so all blocking process work happens off the pool.
func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil, input: String? = nil) async throws -> (
    status: Int32, stdout: String, stderr: String
) {
    try await blocking {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        let stdin = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        // Drain stderr on another thread so a chatty child cannot fill one pipe while we read the other.
        let stderrData = Mutex(Data())
        // Throwing reads, each handle closed once read (see forEachChunk).
        let drain = Thread {
            let data = (try? err.fileHandleForReading.readToEnd()) ?? Data()
            try? err.fileHandleForReading.close()
            stderrData.withLock { $0 = data }
        }
        drain.start()
        let stdout = (try? out.fileHandleForReading.readToEnd()) ?? Data()
        try? out.fileHandleForReading.close()
        process.waitUntilExit()
        while drain.isExecuting || !drain.isFinished { usleep(1000) }
        let stderr = stderrData.withLock { $0 }
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }
}

/// Waits for a process to exit without blocking the cooperative pool.
func waitForExit(_ process: Process) async throws {
    try await blocking { process.waitUntilExit() }
}

/// Runs blocking work on a new thread.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

extension Process: @retroactive @unchecked Sendable {}

/// A `modeld` started on `127.0.0.1:0`: the port it really bound is read from its "listening" log line, so no other
/// process can take the port between choosing and binding it. Its stderr is kept for failure messages.
final class ModeldLaunch: Sendable {
    let process: Process
    let port: Int
    private let output: Output

    /// Everything `modeld` wrote to stderr so far.
    var log: String { output.text }

    private final class Output: Sendable {
        let data = Mutex(Data())
        var text: String { String(decoding: data.withLock { $0 }, as: UTF8.self) }
    }

    init(arguments: [String] = [], environment: [String: String]) async throws {
        let process = Process()
        process.executableURL = productsDirectory.appending(path: "modeld")
        process.arguments = arguments
        process.environment = environment.merging(["MODELD_LISTEN": "127.0.0.1:0"]) { _, new in new }
        let err = Pipe()
        process.standardError = err
        try process.run()
        let output = Output()
        let reader = err.fileHandleForReading
        Thread {
            forEachChunk(of: reader) { chunk in
                output.data.withLock { $0.append(chunk) }
                return true
            }
            try? reader.close()
        }.start()
        self.process = process
        self.output = output
        var found: Int?
        for _ in 0..<400 where found == nil {
            let text = output.text
            if let match = text.firstMatch(of: /socket=127\.0\.0\.1:(\d+)[^\n]* listening/) {
                found = Int(match.1)
            } else if !process.isRunning {
                break
            } else {
                try await Task.sleep(for: .milliseconds(25))
            }
        }
        guard let found else {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            throw LaunchFailure(log: output.text)
        }
        port = found
    }

    struct LaunchFailure: Error, CustomStringConvertible {
        let log: String
        var description: String { "modeld did not start listening; its log:\n\(log)" }
    }
}

/// A block of engine ports (`MODELD_ENGINE_PORTS`) of its own for each daemon a test starts, so that parallel
/// tests never race for one port (below LaunchersTests' blocks at 20000-31999 and the ephemeral range).
func enginePortBlock() -> String {
    enum Counter { static let next = Atomic<Int>(0) }
    let index = Counter.next.add(1, ordering: .relaxed).oldValue
    let low = 12000 + (Int(getpid()) % 10) * 600 + (index % 30) * 20
    return "\(low)-\(low + 19)"
}

/// The tiny Qwen2 model the engine tests committed (Tests/BuiltinEngineTests/Fixtures/models/qwen2-tiny).
enum TinyQwen2 {
    static let directory = URL(filePath: #filePath).deletingLastPathComponent()
        .appending(path: "../BuiltinEngineTests/Fixtures/models/qwen2-tiny").standardized
    /// The files a hub serves for it (the fixture's expected logits are left out).
    static let names = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]

    /// Its files for a fake hub repository, the safetensors as LFS.
    static func hubFiles() throws -> [FakeFile] {
        try names.map { name in FakeFile(name, try Data(contentsOf: directory.appending(path: name)), lfs: name.hasSuffix(".safetensors")) }
    }
}

/// A daemon whose vLLM is the fake engine, with `acme/tiny` pulled from a fake hub. The fake engine appends the
/// body of every chat completion it receives to `requestLog`. The daemon is stopped afterwards, also on failure.
func withFakeVLLMDaemon(
    environment: [String: String] = [:], _ body: @Sendable (_ daemon: DaemonProcess, _ requestLog: String) async throws -> Void
) async throws {
    let fakeEngine = productsDirectory.appending(path: "fake-engine").path
    try await FakeHub.withRunning { hub in
        hub.addRepo("acme/tiny", commits: [FakeCommit(files: [FakeFile("config.json", "{}")])])
        let requestLog = FileManager.default.temporaryDirectory.appending(path: "fake-requests-\(UUID().uuidString).log").path
        defer { try? FileManager.default.removeItem(atPath: requestLog) }
        let daemon = try await DaemonProcess(
            extraEnvironment: environment.merging([
                "HF_ENDPOINT": hub.endpoint, "MODELD_VLLM_COMMAND": fakeEngine, "FAKE_ENGINE_REQUEST_LOG": requestLog,
            ]) { $1 })
        do {
            let pulled = try await daemon.modelctl(["pull", "acme/tiny"])
            #expect(pulled.status == 0, "\(pulled.stderr)")
            try await body(daemon, requestLog)
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }
}
