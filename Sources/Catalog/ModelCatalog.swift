import Foundation

/// One size of a catalog model, with its repository on each hub.
package struct CatalogSize: Sendable, Hashable, Codable {
    package var size: String
    package var hfRepo: String
    package var modelscopeID: String?
    package var ollamaName: String?
    /// A Hugging Face repository of the same model as GGUF files (several quantizations), for llama.cpp.
    package var ggufRepo: String?

    package init(size: String, hfRepo: String, modelscopeID: String? = nil, ollamaName: String? = nil, ggufRepo: String? = nil) {
        self.ggufRepo = ggufRepo
        self.size = size
        self.hfRepo = hfRepo
        self.modelscopeID = modelscopeID
        self.ollamaName = ollamaName
    }

    enum CodingKeys: String, CodingKey {
        case size
        case hfRepo = "hf_repo"
        case modelscopeID = "modelscope_id"
        case ollamaName = "ollama_name"
        case ggufRepo = "gguf_repo"
    }
}

/// A model family in the catalog (`models.example.json`, in the catalog format the README describes).
package struct CatalogEntry: Sendable, Hashable, Codable {
    package var id: String
    package var name: String
    package var description: String
    package var officialURL: String
    package var sizes: [CatalogSize]
    package var quantizations: [String]
    package var engines: [String]
    package var formats: [String]
    package var defaultEngine: String

    package init(
        id: String, name: String, description: String, officialURL: String, sizes: [CatalogSize],
        quantizations: [String], engines: [String], formats: [String], defaultEngine: String
    ) {
        self.id = id
        self.name = name
        self.description = description
        self.officialURL = officialURL
        self.sizes = sizes
        self.quantizations = quantizations
        self.engines = engines
        self.formats = formats
        self.defaultEngine = defaultEngine
    }

    enum CodingKeys: String, CodingKey {
        case id, name, description, sizes, quantizations, engines, formats
        case officialURL = "official_url"
        case defaultEngine = "default_engine"
    }
}

/// The engines modeld knows how to launch.
package let knownEngines: Set<String> = ["builtin", "vllm", "sglang", "ollama", "llamacpp"]

/// The model catalog: the families users can pull by a short reference such as `qwen2.5:0.5b`.
package struct ModelCatalog: Sendable {
    package var entries: [CatalogEntry]

    package init(entries: [CatalogEntry]) {
        self.entries = entries
    }

    /// Loads and validates a catalog file.
    /// - Throws: ``CatalogError`` naming the exact location of the first problem.
    package static func load(contentsOf url: URL) throws -> ModelCatalog {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw CatalogError(location: url.path, problem: "cannot be read (\(error.localizedDescription))")
        }
        return try parse(data, source: url.path)
    }

    /// The catalog compiled into modeld, used when no `--catalog` is given.
    package static func builtIn() throws -> ModelCatalog {
        try parse(Data(builtInJSON.utf8), source: "built-in catalog")
    }

    /// Parses and validates catalog JSON.
    /// - Parameter source: a name for the input in error messages (a file path).
    package static func parse(_ data: Data, source: String = "catalog") throws -> ModelCatalog {
        let root: Any
        do {
            root = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw CatalogError(location: source, problem: "is not valid JSON (\(JSONErrorDescription.describe(error)))")
        }
        var validator = CatalogValidator()
        let entries = try validator.validate(root)
        return ModelCatalog(entries: entries)
    }

    /// Finds a catalog entry by id (case-insensitive).
    package func entry(id: String) -> CatalogEntry? {
        entries.first { $0.id.lowercased() == id.lowercased() }
    }

    /// The catalog entry and size whose Hugging Face, ModelScope or GGUF repository is `repo`, if any.
    package func entry(forRepo repo: String) -> (CatalogEntry, CatalogSize)? {
        let wanted = repo.lowercased()
        for entry in entries {
            for size in entry.sizes
            where size.hfRepo.lowercased() == wanted || size.modelscopeID?.lowercased() == wanted || size.ggufRepo?.lowercased() == wanted {
                return (entry, size)
            }
        }
        return nil
    }
}

/// A catalog that failed validation: `models[2].sizes[0].hf_repo: missing`.
package struct CatalogError: Error, CustomStringConvertible, Equatable {
    /// Where the problem is: a JSON path such as `models[2].sizes[0].hf_repo`, or the file.
    package var location: String
    /// What is wrong there: `missing`, `must be a string`, ...
    package var problem: String

    package init(location: String, problem: String) {
        self.location = location
        self.problem = problem
    }

    package var description: String { "\(location): \(problem)" }
}

enum JSONErrorDescription {
    /// Foundation's JSON errors carry the useful part in the debug description of the underlying error.
    static func describe(_ error: any Error) -> String {
        let nsError = error as NSError
        if let detail = nsError.userInfo[NSDebugDescriptionErrorKey] as? String { return detail }
        return nsError.localizedDescription
    }
}
