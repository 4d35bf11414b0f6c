import Crypto
import Foundation
import GRDB

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
    package var createdAt: Date
    package var lastUsedAt: Date?
    package var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, hash, scope
        case ratePerMinute = "rate_per_minute"
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
        case revokedAt = "revoked_at"
    }
}

extension Store {
    /// SHA-256 of a key, hex: what the store keeps.
    package static func keyHash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Creates a key. - Returns: the record and the key itself (shown once, never stored).
    /// - Throws: ``StoreError`` with `.conflict` when the name is taken.
    package func createAPIKey(name: String, scope: String, ratePerMinute: Int?) throws -> (APIKeyRecord, String) {
        var bytes = [UInt8](repeating: 0, count: 24)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        let key = "mdk_" + bytes.map { String(format: "%02x", $0) }.joined()
        let record = APIKeyRecord(
            id: "key_" + String(UUID().uuidString.prefix(8)).lowercased(), name: name, prefix: String(key.prefix(10)),
            hash: Self.keyHash(key), scope: scope, ratePerMinute: ratePerMinute, createdAt: Date())
        do {
            try write { db in try record.insert(db) }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw StoreError(code: .conflict, message: "an API key named \(name) exists already")
        }
        return (record, key)
    }

    /// Every key, newest first (revoked ones included, marked).
    package func apiKeys() throws -> [APIKeyRecord] {
        try read { db in try APIKeyRecord.order(Column("created_at").desc).fetchAll(db) }
    }

    /// Whether any key is active: once one is, TCP requests need a key.
    package func hasActiveAPIKeys() throws -> Bool {
        try read { db in try APIKeyRecord.filter(Column("revoked_at") == nil).fetchCount(db) > 0 }
    }

    /// The active key with this value, if any; records its use.
    package func authenticate(key: String) throws -> APIKeyRecord? {
        let hash = Self.keyHash(key)
        return try write { db in
            guard var record = try APIKeyRecord.filter(Column("hash") == hash && Column("revoked_at") == nil).fetchOne(db) else {
                return nil
            }
            record.lastUsedAt = Date()
            try record.update(db)
            return record
        }
    }

    /// Revokes a key by id or name. - Throws: ``StoreError`` `.notFound`.
    package func revokeAPIKey(_ idOrName: String) throws -> APIKeyRecord {
        try write { db in
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
