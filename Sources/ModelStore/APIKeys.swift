import Crypto
import Foundation
import GRDB
import Synchronization

/// An API key as stored: only its SHA-256 is kept; the key itself is shown once, at creation.
package struct APIKeyRecord: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "api_keys"
    package var id: String
    package var name: String
    /// The first characters of the key, to recognise it in listings.
    package var prefix: String
    package var hash: String
    /// `inference` (the OpenAI API) or `admin` (everything).
    package var scope: String
    package var ratePerMinute: Int?
    /// Tokens (prompt and completion) per UTC day and per UTC month; nil: no limit.
    package var tokensPerDay: Int?
    package var tokensPerMonth: Int?
    /// The most a key may spend per UTC month, in the unit of the backends' costs; nil: no limit.
    package var spendCap: Double?
    /// The model names the key may request (compared case-insensitively); nil: any.
    package var allowedModels: [String]?
    package var createdAt: Date
    package var lastUsedAt: Date?
    package var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, hash, scope
        case ratePerMinute = "rate_per_minute"
        case tokensPerDay = "tokens_per_day"
        case tokensPerMonth = "tokens_per_month"
        case spendCap = "spend_cap"
        case allowedModels = "allowed_models"
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
        case revokedAt = "revoked_at"
    }

    /// Whether the key may request `model` (its allowed-models list, case-insensitively).
    package func allows(model: String) -> Bool {
        guard let allowedModels else { return true }
        return allowedModels.contains { $0.caseInsensitiveCompare(model) == .orderedSame }
    }
}

/// A key's limits, as created or changed: for a change, nil leaves a limit as it is, and 0 (or an empty list)
/// removes it.
package struct APIKeyLimits: Sendable, Hashable {
    package var ratePerMinute: Int?
    package var tokensPerDay: Int?
    package var tokensPerMonth: Int?
    package var spendCap: Double?
    package var allowedModels: [String]?

    package init(
        ratePerMinute: Int? = nil, tokensPerDay: Int? = nil, tokensPerMonth: Int? = nil, spendCap: Double? = nil,
        allowedModels: [String]? = nil
    ) {
        self.ratePerMinute = ratePerMinute
        self.tokensPerDay = tokensPerDay
        self.tokensPerMonth = tokensPerMonth
        self.spendCap = spendCap
        self.allowedModels = allowedModels
    }

    /// Applies the limits given to `record`.
    func apply(to record: inout APIKeyRecord) {
        if let value = ratePerMinute { record.ratePerMinute = value == 0 ? nil : value }
        if let value = tokensPerDay { record.tokensPerDay = value == 0 ? nil : value }
        if let value = tokensPerMonth { record.tokensPerMonth = value == 0 ? nil : value }
        if let value = spendCap { record.spendCap = value == 0 ? nil : value }
        if let value = allowedModels { record.allowedModels = value.isEmpty ? nil : value }
    }
}

extension Store {
    /// SHA-256 of a key, hex: what the store keeps.
    package static func keyHash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Creates a key. - Returns: the record and the key itself (shown once, never stored).
    /// - Throws: ``StoreError`` with `.conflict` when the name is taken.
    package func createAPIKey(name: String, scope: String, limits: APIKeyLimits = APIKeyLimits()) async throws -> (APIKeyRecord, String) {
        var bytes = [UInt8](repeating: 0, count: 24)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        let key = "mdk_" + bytes.map { String(format: "%02x", $0) }.joined()
        var record = APIKeyRecord(
            id: "key_" + String(UUID().uuidString.prefix(8)).lowercased(), name: name, prefix: String(key.prefix(10)),
            hash: Self.keyHash(key), scope: scope, createdAt: Date())
        limits.apply(to: &record)
        let created = record
        do {
            try await write { db in try created.insert(db) }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw StoreError(code: .conflict, message: "an API key named \(name) exists already")
        }
        activeKeys.invalidate()
        return (record, key)
    }

    /// Every key, newest first (revoked ones included, marked).
    package func apiKeys() async throws -> [APIKeyRecord] {
        try await read { db in try APIKeyRecord.order(Column("created_at").desc).fetchAll(db) }
    }

    /// Whether any key is active: once one is, TCP requests need a key. Answered from memory.
    package func hasActiveAPIKeys() async throws -> Bool {
        try await activeAPIKeys().isEmpty == false
    }

    /// The active key with this value, if any. Answered from memory.
    package func authenticate(key: String) async throws -> APIKeyRecord? {
        authenticate(key: key, among: try await activeAPIKeys())
    }

    /// The active key with this value among `active` (from ``activeAPIKeys()`` or ``cachedActiveAPIKeys()``).
    /// Its use is recorded in the store at most once a minute per key, without waiting for the write (a failed
    /// write loses only that record), so authenticating a request costs no database work.
    package func authenticate(key: String, among active: [String: APIKeyRecord]) -> APIKeyRecord? {
        guard var record = active[Self.keyHash(key)] else { return nil }
        let now = Date()
        let id = record.id
        if activeKeys.shouldRecordUse(of: id, at: now) {
            write(
                { db in
                    try db.execute(sql: "UPDATE api_keys SET last_used_at = ? WHERE id = ?", arguments: [StoreDate.text(now), id])
                }, completion: { _ in })
        }
        record.lastUsedAt = now
        return record
    }

    /// The active keys by hash: from memory, read from the store when not loaded yet.
    package func activeAPIKeys() async throws -> [String: APIKeyRecord] {
        let (cached, generation) = activeKeys.lookup()
        if let cached { return cached }
        let records = try await read { db in try APIKeyRecord.filter(Column("revoked_at") == nil).fetchAll(db) }
        let byHash = Dictionary(records.map { ($0.hash, $0) }, uniquingKeysWith: { first, _ in first })
        activeKeys.store(byHash, ifStill: generation)
        return byHash
    }

    /// The active keys by hash when they are in memory, without touching the store; nil when they must be read
    /// first (with ``activeAPIKeys()``). For code that must not wait, on an event loop.
    package func cachedActiveAPIKeys() -> [String: APIKeyRecord]? {
        activeKeys.lookup().byHash
    }

    /// Changes an active key's limits (found by id or name). - Throws: ``StoreError`` `.notFound`.
    package func updateAPIKey(_ idOrName: String, limits: APIKeyLimits) async throws -> APIKeyRecord {
        // After the commit, as for a revocation.
        defer { activeKeys.invalidate() }
        return try await write { db in
            guard var record = try APIKeyRecord.filter(Column("id") == idOrName || Column("name") == idOrName).fetchOne(db),
                record.revokedAt == nil
            else {
                throw StoreError(code: .notFound, message: "no active API key \(idOrName)")
            }
            limits.apply(to: &record)
            try record.update(db)
            return record
        }
    }

    /// Revokes a key by id or name. - Throws: ``StoreError`` `.notFound`.
    package func revokeAPIKey(_ idOrName: String) async throws -> APIKeyRecord {
        // After the commit: a reload in between must not cache the key as still active.
        defer { activeKeys.invalidate() }
        return try await write { db in
            guard var record = try APIKeyRecord.filter(Column("id") == idOrName || Column("name") == idOrName).fetchOne(db) else {
                throw StoreError(code: .notFound, message: "no API key \(idOrName)")
            }
            if record.revokedAt == nil {
                record.revokedAt = Date()
                try record.update(db)
            }
            return record
        }
    }
}

/// The active keys in memory, reloaded after this store creates or revokes one (the daemon is the store's
/// only writer), and when each key's use was last written.
package final class ActiveKeysCache: Sendable {
    private struct State {
        var byHash: [String: APIKeyRecord]?
        /// Raised by every invalidation: a reload that read the store before a create or revoke committed
        /// must not be kept after it.
        var generation = 0
        var recordedUse: [String: Date] = [:]
    }
    private let state = Mutex(State())
    /// How often a key's `last_used_at` is written at most.
    static let useRecordingInterval: TimeInterval = 60

    package init() {}

    func lookup() -> (byHash: [String: APIKeyRecord]?, generation: Int) { state.withLock { ($0.byHash, $0.generation) } }

    func store(_ byHash: [String: APIKeyRecord], ifStill generation: Int) {
        state.withLock { state in
            if state.generation == generation { state.byHash = byHash }
        }
    }

    func invalidate() {
        state.withLock { state in
            state.byHash = nil
            state.generation += 1
        }
    }

    func shouldRecordUse(of id: String, at now: Date) -> Bool {
        state.withLock { state in
            if let last = state.recordedUse[id], now.timeIntervalSince(last) < Self.useRecordingInterval { return false }
            state.recordedUse[id] = now
            return true
        }
    }
}
