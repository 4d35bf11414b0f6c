import ArgumentParser
import ModeldAPI

/// The `modeld` executable: the daemon (`modeld` / `modeld serve`) and the built-in engine (`modeld engine`).
@main
struct Modeld: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modeld",
        abstract: "Model manager and control-plane daemon for LLM inference.",
        discussion: """
            modeld pulls models from Hugging Face or ModelScope into a managed directory, records every \
            version in SQLite, and runs inference engines as supervised children behind one API.
            """,
        version: modeldVersion,
        subcommands: [Serve.self, EngineCommand.self],
        defaultSubcommand: Serve.self
    )
}
