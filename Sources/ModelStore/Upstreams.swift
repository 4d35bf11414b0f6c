import Foundation
import GRDB

/// An upstream as stored (docs/gateway.md): a server the gateway forwards to besides local runs. The provider's
/// key is never stored, only where the daemon reads it: an environment variable (`apiKeyEnv`) or a file
/// (`apiKeyFile`).
package struct UpstreamRecord: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "upstreams"
    package var name: String
    /// `openai`, `azure`, `ollama` or `modeld`.
    package var kind: String
    package var url: String
    package var apiKeyEnv: String?
    package var apiKeyFile: String?
    package var apiVersion: String?
    /// The models given when it was added.
    package var models: [String]
    package var discover: Bool
    /// The models its last listing named (with `discover`).
    package var discovered: [String]
    package var discoveredAt: Date?
    package var priority: Int
    package var weight: Int
    /// Prices per million prompt and completion tokens.
    package var costIn: Double
    package var costOut: Double
    package var maxConcurrency: Int?
    /// Seconds to wait for the reply's first byte.
    package var timeout: Double
    package var enabled: Bool
    package var createdAt: Date
    package var updatedAt: Date

    package init(
        name: String, kind: String, url: String, apiKeyEnv: String? = nil, apiKeyFile: String? = nil, apiVersion: String? = nil,
        models: [String] = [], discover: Bool = false, priority: Int = 0, weight: Int = 1, costIn: Double = 0, costOut: Double = 0,
        maxConcurrency: Int? = nil, timeout: Double = 30, enabled: Bool = true, createdAt: Date = Date()
    ) {
        self.name = name
        self.kind = kind
        self.url = url
        self.apiKeyEnv = apiKeyEnv
        self.apiKeyFile = apiKeyFile
        self.apiVersion = apiVersion
        self.models = models
        self.discover = discover
        self.discovered = []
        self.priority = priority
        self.weight = weight
        self.costIn = costIn
        self.costOut = costOut
        self.maxConcurrency = maxConcurrency
        self.timeout = timeout
        self.enabled = enabled
        self.createdAt = createdAt
        self.updatedAt = createdAt
    }

    /// The models it serves: those given, then those discovered, each once.
    package var servedModels: [String] {
        var seen = Set<String>()
        return (models + discovered).filter { seen.insert($0.lowercased()).inserted }
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, url, models, discover, discovered, priority, weight, timeout, enabled
        case apiKeyEnv = "api_key_env"
        case apiKeyFile = "api_key_file"
        case apiVersion = "api_version"
        case discoveredAt = "discovered_at"
        case costIn = "cost_in"
        case costOut = "cost_out"
        case maxConcurrency = "max_concurrency"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    package static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { StoreDate.encoding }
    package static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { StoreDate.decoding }
}

/// A model group as stored: a public name, the names it routes to, and its strategy (nil: the default).
package struct ModelGroupRecord: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "model_groups"
    package var name: String
    package var targets: [String]
    package var strategy: String?
    package var createdAt: Date

    package init(name: String, targets: [String], strategy: String?, createdAt: Date = Date()) {
        self.name = name
        self.targets = targets
        self.strategy = strategy
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case name, targets, strategy
        case createdAt = "created_at"
    }

    package static func databaseDateEncodingStrategy(for column: String) -> DatabaseDateEncodingStrategy { StoreDate.encoding }
    package static func databaseDateDecodingStrategy(for column: String) -> DatabaseDateDecodingStrategy { StoreDate.decoding }
}

extension Store {
    /// Every upstream, by name.
    package func upstreams() async throws -> [UpstreamRecord] {
        try await read { db in try UpstreamRecord.order(Column("name")).fetchAll(db) }
    }

    /// Adds an upstream, or replaces the settings of the one with its name (its discovered models and its
    /// enabled state stay).
    /// - Returns: the record as stored.
    package func saveUpstream(_ record: UpstreamRecord) async throws -> UpstreamRecord {
        try await write { db in
            var record = record
            if let old = try UpstreamRecord.fetchOne(db, key: record.name) {
                record.createdAt = old.createdAt
                record.discovered = old.discovered
                record.discoveredAt = old.discoveredAt
                record.enabled = old.enabled
            }
            record.updatedAt = Date()
            try record.save(db)
            return record
        }
    }

    /// Enables or disables an upstream. - Throws: ``StoreError`` `.notFound`.
    package func setUpstream(_ name: String, enabled: Bool) async throws -> UpstreamRecord {
        try await updateUpstream(name) { $0.enabled = enabled }
    }

    /// Records the models an upstream listed.
    package func setDiscovered(_ name: String, models: [String]) async throws -> UpstreamRecord {
        try await updateUpstream(name) { record in
            record.discovered = models
            record.discoveredAt = Date()
        }
    }

    private func updateUpstream(_ name: String, _ change: @escaping @Sendable (inout UpstreamRecord) -> Void) async throws -> UpstreamRecord {
        try await write { db in
            guard var record = try UpstreamRecord.fetchOne(db, key: name) else {
                throw StoreError(code: .notFound, message: "no upstream \(name): `modelctl upstream list` lists them")
            }
            change(&record)
            record.updatedAt = Date()
            try record.update(db)
            return record
        }
    }

    /// Removes an upstream. - Throws: ``StoreError`` `.notFound`.
    package func removeUpstream(_ name: String) async throws {
        try await write { db in
            guard try UpstreamRecord.deleteOne(db, key: name) else {
                throw StoreError(code: .notFound, message: "no upstream \(name): `modelctl upstream list` lists them")
            }
        }
    }

    /// Every model group, by name.
    package func modelGroups() async throws -> [ModelGroupRecord] {
        try await read { db in try ModelGroupRecord.order(Column("name")).fetchAll(db) }
    }

    /// Creates or replaces a model group.
    package func saveModelGroup(_ record: ModelGroupRecord) async throws {
        try await write { db in try record.save(db) }
    }

    /// Removes a model group. - Throws: ``StoreError`` `.notFound`.
    package func removeModelGroup(_ name: String) async throws {
        try await write { db in
            guard try ModelGroupRecord.deleteOne(db, key: name) else {
                throw StoreError(code: .notFound, message: "no model group \(name)")
            }
        }
    }
}
