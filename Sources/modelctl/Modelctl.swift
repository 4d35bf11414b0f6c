import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl`: the command-line client of modeld.
@main
struct Modelctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modelctl",
        abstract: "Control modeld: pull, list and run models.",
        version: modeldVersion,
        subcommands: [
            ModelPull.self, ModelList.self, ModelShow.self, ModelRemove.self, ModelVerify.self, ModelExport.self, ModelImport.self, RunStart.self,
            RunList.self, RunStop.self,
            RunLogsCommand.self, RunChat.self, KeysCommand.self, SystemCommand.self, UpstreamCommand.self, GroupCommand.self, UsageCommand.self,
        ]
    )
}

/// Options every command shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "modeld's URL (env MODELD_URL). Without it modelctl uses the control socket, else http://127.0.0.1:8700.")
    var url: String?

    @Option(
        name: .long,
        help: "modeld's control socket (env MODELD_CONTROL_SOCKET; default /run/modeld/modeld.sock, then ~/.local/share/modeld/modeld.sock).")
    var socket: String?

    @Option(name: .long, help: "API key for a TCP daemon that requires one (env MODELD_API_KEY).")
    var apiKey: String?

    @Option(
        name: .long,
        help: "CA certificates (PEM) to verify an https:// --url with, such as the daemon's own self-signed certificate (env MODELD_CACERT).")
    var cacert: String?

    func client() throws -> ModeldClient {
        let environment = ProcessInfo.processInfo.environment
        var endpoint = endpoint(environment: environment)
        endpoint.apiKey = apiKey ?? environment["MODELD_API_KEY"]
        endpoint.caCertificates = cacert ?? environment["MODELD_CACERT"].flatMap { $0.isEmpty ? nil : $0 }
        return try ModeldClient(endpoint: endpoint)
    }

    /// `--url`/`MODELD_URL` when given, else the first control socket that exists, else the default TCP address.
    func endpoint(environment: [String: String]) -> DaemonEndpoint {
        if let url = url ?? environment["MODELD_URL"].flatMap({ $0.isEmpty ? nil : $0 }) {
            return DaemonEndpoint(baseURL: url)
        }
        var candidates: [String] = []
        if let explicit = socket ?? environment["MODELD_CONTROL_SOCKET"].flatMap({ $0.isEmpty ? nil : $0 }) {
            // Named explicitly: use it even if it does not exist yet, so the error names it.
            return DaemonEndpoint(baseURL: "http://localhost", unixSocketPath: explicit)
        }
        candidates.append("/run/modeld/modeld.sock")
        if let dataDir = environment["MODELD_DATA_DIR"], !dataDir.isEmpty { candidates.append("\(dataDir)/modeld.sock") }
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") { candidates.append("\(xdg)/modeld/modeld.sock") }
        if let home = environment["HOME"], !home.isEmpty { candidates.append("\(home)/.local/share/modeld/modeld.sock") }
        for path in candidates where FileManager.default.isWritableFile(atPath: path) {
            return DaemonEndpoint(baseURL: "http://localhost", unixSocketPath: path)
        }
        return DaemonEndpoint(baseURL: "http://127.0.0.1:8700")
    }
}

/// Exit codes modelctl documents (README): 0 success, 1 an error reported by modeld, 2 usage,
/// 3 modeld unreachable.
enum ModelctlExit {
    static func fail(_ error: any Error) -> ExitCode {
        printError("modelctl: \(error)")
        if let error = error as? ClientError, error.kind == .unreachable { return ExitCode(3) }
        return ExitCode(1)
    }
}
