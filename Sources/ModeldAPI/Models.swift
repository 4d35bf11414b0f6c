import FoundationEssentials
import Glibc

/// One local version of a model, as `modelctl list` and `GET /api/v1/models` show it.
package struct LocalVersionInfo: Codable, Sendable, Hashable {
    package var repo: String
    package var source: String
    /// The revision the user asked for (`main`, a tag, a commit).
    package var revision: String
    /// The commit it resolved to.
    package var commit: String
    package var sizeBytes: Int64
    /// `pending`, `downloading`, `ready`, `failed` or `damaged`.
    package var state: String
    /// The snapshot directory engines load (present once files are in place).
    package var path: String?
    package var error: String?
    package var createdAt: Date
    package var readyAt: Date?
    /// The weights' format once ready: `safetensors` or `gguf`.
    package var format: String?
    /// The weights' type once ready, in the catalog's terms: the safetensors' main dtype (`bf16`), a quantization
    /// method (`awq`), or the GGUF files' types from their names (`q4_k_m`; several joined by `,`).
    package var quantization: String?

    package init(
        repo: String, source: String, revision: String, commit: String, sizeBytes: Int64, state: String,
        path: String?, error: String?, createdAt: Date, readyAt: Date?, format: String? = nil, quantization: String? = nil
    ) {
        self.format = format
        self.quantization = quantization
        self.repo = repo
        self.source = source
        self.revision = revision
        self.commit = commit
        self.sizeBytes = sizeBytes
        self.state = state
        self.path = path
        self.error = error
        self.createdAt = createdAt
        self.readyAt = readyAt
    }

    enum CodingKeys: String, CodingKey {
        case repo, source, revision, commit, state, path, error, format, quantization
        case sizeBytes = "size_bytes"
        case createdAt = "created_at"
        case readyAt = "ready_at"
    }
}

/// A catalog size with what this host has of it.
package struct CatalogSizeInfo: Codable, Sendable, Hashable {
    package var size: String
    package var ref: String
    package var hfRepo: String
    package var modelscopeID: String?
    package var ollamaName: String?
    /// The Hugging Face repository of its GGUF files, for llama.cpp.
    package var ggufRepo: String?
    /// `not_pulled`, or the state of the newest local version (`ready`, `downloading`, ...).
    package var state: String
    package var versions: [LocalVersionInfo]

    package init(
        size: String, ref: String, hfRepo: String, modelscopeID: String?, ollamaName: String?, ggufRepo: String? = nil,
        state: String, versions: [LocalVersionInfo]
    ) {
        self.ggufRepo = ggufRepo
        self.size = size
        self.ref = ref
        self.hfRepo = hfRepo
        self.modelscopeID = modelscopeID
        self.ollamaName = ollamaName
        self.state = state
        self.versions = versions
    }

    enum CodingKeys: String, CodingKey {
        case size, ref, state, versions
        case hfRepo = "hf_repo"
        case modelscopeID = "modelscope_id"
        case ollamaName = "ollama_name"
        case ggufRepo = "gguf_repo"
    }
}

/// A catalog entry with its local state: the items of `GET /api/v1/models`.
package struct CatalogModelInfo: Codable, Sendable, Hashable {
    package var id: String
    package var name: String
    package var description: String
    package var officialURL: String
    package var sizes: [CatalogSizeInfo]
    package var quantizations: [String]
    package var engines: [String]
    package var formats: [String]
    package var defaultEngine: String

    package init(
        id: String, name: String, description: String, officialURL: String, sizes: [CatalogSizeInfo],
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

/// `GET /health`.
package struct HealthInfo: Codable, Sendable, Equatable {
    package var status: String
    package var version: String

    package init(status: String, version: String) {
        self.status = status
        self.version = version
    }
}

/// `GET /api/v1/status`: a summary for a dashboard.
package struct DaemonStatus: Codable, Sendable, Equatable {
    package var version: String
    package var dataDir: String
    /// The sizes of the local versions the store records.
    package var dataDirBytes: Int64
    /// Free bytes for an unprivileged user, and the size, of the file system holding the data directory; nil when
    /// unknown.
    package var freeBytes: Int64?
    package var totalBytes: Int64?
    /// Runs by state, every state present (zero included).
    package var runs: [String: Int]
    /// Local versions, in any state.
    package var versions: Int
    package var tokensServed: TokensServed
    package var uptimeSeconds: Int

    /// Tokens in replies of the gateway and the LLM API since the daemon started, by the engines' own counts.
    package struct TokensServed: Codable, Sendable, Equatable {
        package var prompt: Int
        package var completion: Int

        package init(prompt: Int, completion: Int) {
            self.prompt = prompt
            self.completion = completion
        }
    }

    package init(
        version: String, dataDir: String, dataDirBytes: Int64, freeBytes: Int64?, totalBytes: Int64?, runs: [String: Int],
        versions: Int, tokensServed: TokensServed, uptimeSeconds: Int
    ) {
        self.version = version
        self.dataDir = dataDir
        self.dataDirBytes = dataDirBytes
        self.freeBytes = freeBytes
        self.totalBytes = totalBytes
        self.runs = runs
        self.versions = versions
        self.tokensServed = tokensServed
        self.uptimeSeconds = uptimeSeconds
    }

    enum CodingKeys: String, CodingKey {
        case version, runs, versions
        case dataDir = "data_dir"
        case dataDirBytes = "data_dir_bytes"
        case freeBytes = "free_bytes"
        case totalBytes = "total_bytes"
        case tokensServed = "tokens_served"
        case uptimeSeconds = "uptime_seconds"
    }
}

/// modeld's version, reported by `/health` and `--version`.
package let modeldVersion = "0.1.0"

/// `POST /api/v1/models/resolve`: which hub repository a reference names.
package struct ResolveRequest: Codable, Sendable {
    package var model: String
    package var source: String?

    package init(model: String, source: String? = nil) {
        self.model = model
        self.source = source
    }
}

/// The answer to ``ResolveRequest``.
package struct ResolveResponse: Codable, Sendable, Equatable {
    package var model: String
    package var source: String
    package var repo: String
    /// The catalog ref (`id:size`) when the repository is in the catalog.
    package var catalogRef: String?
    package var defaultEngine: String?

    package init(model: String, source: String, repo: String, catalogRef: String?, defaultEngine: String?) {
        self.model = model
        self.source = source
        self.repo = repo
        self.catalogRef = catalogRef
        self.defaultEngine = defaultEngine
    }

    enum CodingKeys: String, CodingKey {
        case model, source, repo
        case catalogRef = "catalog_ref"
        case defaultEngine = "default_engine"
    }
}

/// `POST /api/v1/models/remove` and `/verify`: a model and optionally one version.
package struct VersionSelector: Codable, Sendable {
    /// A catalog ref or `owner/name`.
    package var model: String
    package var source: String?
    /// A commit (or unique prefix of at least 7), or the revision it was pulled as; nil means every version.
    package var revision: String?

    package init(model: String, source: String? = nil, revision: String? = nil) {
        self.model = model
        self.source = source
        self.revision = revision
    }
}

/// What `verify` found for one version.
package struct VerifyResult: Codable, Sendable, Equatable {
    package var repo: String
    package var source: String
    package var commit: String
    package var filesChecked: Int
    package var bytesChecked: Int64
    package var intact: Bool
    /// One line per damaged file: `path: problem`.
    package var damage: [String]

    package init(repo: String, source: String, commit: String, filesChecked: Int, bytesChecked: Int64, intact: Bool, damage: [String]) {
        self.repo = repo
        self.source = source
        self.commit = commit
        self.filesChecked = filesChecked
        self.bytesChecked = bytesChecked
        self.intact = intact
        self.damage = damage
    }

    enum CodingKeys: String, CodingKey {
        case repo, source, commit, intact, damage
        case filesChecked = "files_checked"
        case bytesChecked = "bytes_checked"
    }
}

/// The versions `remove` deleted.
package struct RemoveResult: Codable, Sendable, Equatable {
    package var removed: [LocalVersionInfo]
    package init(removed: [LocalVersionInfo]) { self.removed = removed }
}
