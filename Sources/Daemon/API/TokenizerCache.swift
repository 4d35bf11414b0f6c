import Foundation
import ModelText
import Synchronization
import Transfer

/// The tokenizers (and chat templates) of model snapshots, loaded once per directory for `count-tokens` and for
/// trimming a conversation to the model's context.
///
/// A snapshot directory never changes once pulled (a new commit is a new directory), so entries stay valid;
/// the cache keeps the few most recently loaded.
final class TokenizerCache: Sendable {
    struct Entry: Sendable {
        let tokenizer: Tokenizer
        /// The chat template, or why the model has none.
        let template: Result<ChatTemplate, any Error>
        /// The model's context length (`max_position_embeddings` in its `config.json`), when it says.
        let contextLength: Int?
    }

    private let entries = Mutex<[(directory: String, entry: Entry)]>([])
    private let capacity: Int

    init(capacity: Int = 8) {
        self.capacity = capacity
    }

    /// The tokenizer of a snapshot directory, loaded on a thread of its own the first time (reading and parsing
    /// a 150k-entry `tokenizer.json` must not hold up the event loop the request runs on).
    /// - Throws: ``TokenizerError`` when the directory has no usable `tokenizer.json`.
    func load(_ directory: String) async throws -> Entry {
        if let hit = entries.withLock({ entries in entries.first { $0.directory == directory }?.entry }) {
            return hit
        }
        let entry = try await onThread {
            let url = URL(filePath: directory, directoryHint: .isDirectory)
            let tokenizer = try Tokenizer(directory: url)
            let config = try? JSONLimits.jsonObject(with: Data(contentsOf: url.appending(path: "config.json"))) as? [String: Any]
            return Entry(
                tokenizer: tokenizer, template: Result { try ChatTemplate(directory: url) },
                contextLength: config?["max_position_embeddings"] as? Int)
        }
        entries.withLock { entries in
            entries.removeAll { $0.directory == directory }
            entries.append((directory, entry))
            if entries.count > capacity { entries.removeFirst(entries.count - capacity) }
        }
        return entry
    }
}
