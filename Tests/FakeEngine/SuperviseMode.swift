import Foundation
import Launchers
import Logging
import ModelStore

/// A throw-away daemon for the "no orphans" test: starts this program as a vLLM engine through the real
/// supervisor, writes the engine's pid to a file once it is ready, and waits to be SIGKILLed.
enum SuperviseMode {
    static func run(dataDirectory path: String, pidFile: String) async throws {
        let dataDirectory = DataDirectory(root: URL(filePath: path, directoryHint: .isDirectory))
        try dataDirectory.prepare()
        let store = try Store(path: dataDirectory.database.path)
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let environment = ProcessInfo.processInfo.environment
        let low = Int(environment["FAKE_SUPERVISE_PORT"] ?? "") ?? 19100
        let configuration = SupervisorConfiguration(
            engines: [.vllm: EngineSettings(command: [me], startTimeout: .seconds(30), stopGrace: .seconds(2))],
            portRange: low...(low + 19),
            readinessInterval: .milliseconds(100),
            baseEnvironment: environment)
        let supervisor = try await Supervisor(store: store, dataDirectory: dataDirectory, configuration: configuration)
        await supervisor.reconcile()
        let model = dataDirectory.root.appending(path: "model").path
        try FileManager.default.createDirectory(atPath: model, withIntermediateDirectories: true)
        var options = RunOptions()
        for (key, value) in environment where key.hasPrefix("FAKE_ENGINE_") { options.environment[key] = value }
        let info = try await supervisor.start(
            RunRequest(
                name: "orphan-check", model: "acme/tiny",
                spec: LaunchSpec(engine: .vllm, modelPath: model, servedName: "tiny", options: options)))
        let ready = try await supervisor.waitUntilSettled(info.runID, timeout: .seconds(30))
        guard ready.state == .ready, let pid = ready.pid else {
            FileHandle.standardError.write(Data("supervise: the engine did not become ready: \(ready)\n".utf8))
            exit(1)
        }
        let temporary = pidFile + ".tmp"
        FileManager.default.createFile(atPath: temporary, contents: Data("\(pid)\n".utf8))
        rename(temporary, pidFile)
        while true { try await Task.sleep(for: .seconds(3600)) }
    }
}
