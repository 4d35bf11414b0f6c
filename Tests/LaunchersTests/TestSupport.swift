import Foundation
import Launchers
import ModelStore
import Synchronization
import Testing

/// The fake engine SwiftPM built next to the test bundle.
let fakeEngine: String = {
    var url = Bundle.main.bundleURL
    while !FileManager.default.fileExists(atPath: url.appending(path: "fake-engine").path), url.path != "/" {
        url.deleteLastPathComponent()
    }
    return url.appending(path: "fake-engine").path
}()

/// Distinct port ranges per test, so tests running in parallel never race for a port.
private let nextPortBlock = Atomic<Int>(0)
func portBlock(size: Int = 20) -> ClosedRange<Int> {
    let index = nextPortBlock.add(1, ordering: .relaxed).oldValue
    // Stay below the kernel's ephemeral range (32768 and up): a listener there can collide with the source
    // port of some other test's outgoing connection.
    // 3,000 ports per test process, so the blocks of one run's sandboxes (a few dozen) never wrap onto each
    // other while their tests run at once; four processes at once get separate slices.
    let low = 20000 + (Int(getpid()) % 4) * 3000 + (index % (3000 / size)) * size
    return low...(low + size - 1)
}

/// A temporary data directory with a store, and helpers to build fast supervisors on it.
final class Sandbox: Sendable {
    let root: URL
    let dataDirectory: DataDirectory
    let store: Store
    let ports: ClosedRange<Int>

    init() throws {
        root = FileManager.default.temporaryDirectory.appending(path: "modeld-launch-\(UUID().uuidString)", directoryHint: .isDirectory)
        dataDirectory = DataDirectory(root: root)
        try dataDirectory.prepare()
        store = try Store(path: dataDirectory.database.path)
        ports = portBlock()
    }

    deinit { try? FileManager.default.removeItem(at: root) }

    /// A model snapshot directory (the fake does not read it, but the contracts need one).
    var modelDirectory: String {
        let path = root.appending(path: "huggingface/hub/models--acme--tiny/snapshots/0123abc").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func path(_ name: String) -> String { root.appending(path: name).path }

    /// Timings shrunk for tests; every engine is the fake.
    func configuration(
        restart: RestartPolicy = RestartPolicy(backoffBase: .milliseconds(200), backoffCap: .seconds(2), burstLimit: 5, burstWindow: .seconds(600)),
        startTimeout: Duration = .seconds(30), grace: Duration = .seconds(5), liveness: Duration = .milliseconds(300),
        logMaxBytes: Int64 = 10 << 20, environment: [String: String] = [:]
    ) -> SupervisorConfiguration {
        var engines: [EngineKind: EngineSettings] = [:]
        engines[.vllm] = EngineSettings(command: [fakeEngine], startTimeout: startTimeout, stopGrace: grace)
        engines[.sglang] = EngineSettings(command: [fakeEngine, "-m", "sglang.launch_server"], startTimeout: startTimeout, stopGrace: grace)
        engines[.builtin] = EngineSettings(command: [fakeEngine], startTimeout: startTimeout, stopGrace: grace)
        engines[.ollama] = EngineSettings(command: [fakeEngine], startTimeout: startTimeout, stopGrace: grace)
        var base = ["PATH": "/usr/bin:/bin", "HOME": root.path, "LANG": "C.UTF-8"]
        base.merge(environment) { _, new in new }
        return SupervisorConfiguration(
            engines: engines, portRange: ports, restart: restart, readinessInterval: .milliseconds(100),
            livenessInterval: liveness, livenessFailureThreshold: 2, probeTimeout: .seconds(2), logMaxBytes: logMaxBytes,
            logFilesKept: 3, reasonLogLines: 20, baseEnvironment: base)
    }

    func supervisor(_ configuration: SupervisorConfiguration? = nil) async throws -> Supervisor {
        try await Supervisor(store: store, dataDirectory: dataDirectory, configuration: configuration ?? self.configuration())
    }

    func vllmRequest(name: String = "tiny", environment: [String: String] = [:], options: RunOptions = RunOptions()) -> RunRequest {
        var options = options
        options.environment.merge(environment) { _, new in new }
        return RunRequest(
            name: name, model: "acme/tiny", spec: LaunchSpec(engine: .vllm, modelPath: modelDirectory, servedName: "tiny", options: options))
    }
}

/// What the fake wrote about itself at start.
struct FakeRecord {
    var argv: [String]
    var env: [String: String]
    var fds: [Int]
    var sigIgn: String
    var sigBlk: String
    var pid: Int32
    var pgid: Int32
    var sid: Int32

    init(path: String) throws {
        let data = try Data(contentsOf: URL(filePath: path))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        argv = object["argv"] as? [String] ?? []
        env = object["env"] as? [String: String] ?? [:]
        fds = object["fds"] as? [Int] ?? []
        sigIgn = object["sig_ign"] as? String ?? ""
        sigBlk = object["sig_blk"] as? String ?? ""
        pid = Int32(object["pid"] as? Int ?? -1)
        pgid = Int32(object["pgid"] as? Int ?? -1)
        sid = Int32(object["sid"] as? Int ?? -1)
    }
}

/// Polls `condition` until it holds or `timeout` passes.
@discardableResult
func eventually(timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

/// Whether a process exists and is not a zombie.
func isRunning(_ pid: Int32) -> Bool {
    ProcStat(pid: pid)?.isRunning ?? false
}

func readPid(_ path: String) -> Int32? {
    (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

func logText(_ supervisor: Supervisor, _ run: String) async throws -> String {
    try await supervisor.logs(run, tail: 10_000).joined(separator: "\n")
}
