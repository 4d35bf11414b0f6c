import Foundation

/// The managed directory modeld owns, and its fixed layout (documented in the README).
///
/// ```
/// <data>/modeld.sqlite        the store
/// <data>/huggingface/hub/     a Hugging Face hub cache (docs/design/hubs.md, Cache layout)
/// <data>/modelscope/          ModelScope downloads, per repository and commit
/// <data>/ollama/              OLLAMA_MODELS of the shared Ollama child
/// <data>/logs/                engine logs, one file per run
/// <data>/tmp/                 partial downloads and archive staging
/// ```
package struct DataDirectory: Sendable, Hashable {
    package let root: URL

    package init(root: URL) {
        self.root = root.standardizedFileURL
    }

    package var database: URL { root.appending(path: "modeld.sqlite") }
    package var huggingFaceHub: URL { root.appending(path: "huggingface/hub", directoryHint: .isDirectory) }
    package var modelScope: URL { root.appending(path: "modelscope", directoryHint: .isDirectory) }
    package var ollama: URL { root.appending(path: "ollama", directoryHint: .isDirectory) }
    package var logs: URL { root.appending(path: "logs", directoryHint: .isDirectory) }
    package var tmp: URL { root.appending(path: "tmp", directoryHint: .isDirectory) }

    /// Creates the directory and its layout if missing. The root is private to the daemon's user (0750).
    /// - Throws: when a directory cannot be created (a read-only or full file system, a file in the way).
    package func prepare() throws {
        let fileManager = FileManager.default
        for directory in [root, huggingFaceHub, modelScope, ollama, logs, tmp] {
            do {
                try fileManager.createDirectory(
                    at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
            } catch {
                throw DataDirectoryError(path: directory.path, reason: error.localizedDescription)
            }
        }
    }

    /// The default location: `$STATE_DIRECTORY` under systemd, else `$XDG_DATA_HOME/modeld`, else
    /// `~/.local/share/modeld`.
    package static func defaultRoot(environment: [String: String]) -> URL {
        // systemd passes a colon-separated list when StateDirectory= names several; the first is ours.
        if let state = environment["STATE_DIRECTORY"]?.split(separator: ":").first, !state.isEmpty {
            return URL(filePath: String(state), directoryHint: .isDirectory)
        }
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") {
            return URL(filePath: xdg, directoryHint: .isDirectory).appending(path: "modeld", directoryHint: .isDirectory)
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return URL(filePath: home, directoryHint: .isDirectory).appending(
            path: ".local/share/modeld", directoryHint: .isDirectory)
    }
}

/// The data directory could not be set up.
package struct DataDirectoryError: Error, CustomStringConvertible {
    package var path: String
    package var reason: String
    package var description: String { "cannot create data directory \(path): \(reason)" }
}
