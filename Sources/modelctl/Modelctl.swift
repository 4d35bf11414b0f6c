import ArgumentParser
import Foundation
import ModeldAPI

/// `modelctl`: the command-line client of modeld.
@main
struct Modelctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modelctl",
        abstract: "Control modeld: pull, list and run models.",
        version: modeldVersion,
        subcommands: [ModelList.self]
    )
}

/// Options every command shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "modeld's URL (env MODELD_URL; default http://127.0.0.1:8700).")
    var url: String?

    func client() throws -> ModeldClient {
        let environment = ProcessInfo.processInfo.environment
        let base = url ?? environment["MODELD_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:8700"
        return try ModeldClient(endpoint: DaemonEndpoint(baseURL: base))
    }
}

/// Exit codes modelctl documents (README): 0 success, 1 an error reported by modeld, 2 usage,
/// 3 modeld unreachable.
enum ModelctlExit {
    static func fail(_ error: any Error) -> ExitCode {
        FileHandle.standardError.write(Data("modelctl: \(error)\n".utf8))
        if let error = error as? ClientError, error.kind == .unreachable { return ExitCode(3) }
        return ExitCode(1)
    }
}
