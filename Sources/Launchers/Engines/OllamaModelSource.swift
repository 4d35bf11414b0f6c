/// How a model enters the shared Ollama server.
package enum OllamaModelSource: Sendable, Hashable, Codable {
    /// `POST /api/pull` of a library name such as `qwen2.5:0.5b` (the catalog's `ollama_name`).
    case pull(name: String)
    /// `POST /api/blobs/sha256:<hex>` of a pulled GGUF file, then `POST /api/create` under `name`.
    /// `sha256` may be nil: it is then computed from the file.
    case gguf(path: String, name: String, sha256: String?)

    /// The name the model has inside Ollama, used in requests to it.
    package var modelName: String {
        switch self {
        case .pull(let name): name
        case .gguf(_, let name, _): name
        }
    }
}
