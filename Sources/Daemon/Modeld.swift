import ArgumentParser
import Foundation
import ModeldAPI
import NIOCore
import NIOPosix

/// The entry point: Swift's tasks run on the daemon's NIO event loops rather than a pool of their own, so that a
/// request's handler runs on the event loop its connection lives on, and the gateway's requests to engines
/// (``EngineClient`` picks connections on the same loop) go out and come back with no thread hand-off.
/// Long blocking work (downloads, hashing, archives, loading a tokenizer) runs on threads of its own (`onThread`),
/// as it did beside the pool; short store reads and writes run where their handler runs, as before.
/// NIO can take over only before the first task starts, hence a synchronous `main`. `modeld engine` keeps Swift's
/// own pool: its handlers wait on its batch scheduler's thread, not on connections of their own.
@main
enum ModeldMain {
    static func main() {
        if CommandLine.arguments.dropFirst().first != EngineCommand.configuration.commandName {
            _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        }
        Task {
            await Modeld.main()
            exit(0)
        }
        dispatchMain()
    }
}

/// The `modeld` executable: the daemon (`modeld` / `modeld serve`) and the built-in engine (`modeld engine`).
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
