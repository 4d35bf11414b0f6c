import FoundationEssentials
import Glibc

/// `POST /api/v1/keys`.
package struct KeyCreateRequest: Codable, Sendable {
    package var name: String
    /// `inference` (default) or `admin`.
    package var scope: String?
    package var ratePerMinute: Int?

    package init(name: String, scope: String? = nil, ratePerMinute: Int? = nil) {
        self.name = name
        self.scope = scope
        self.ratePerMinute = ratePerMinute
    }

    enum CodingKeys: String, CodingKey {
        case name, scope
        case ratePerMinute = "rate_per_minute"
    }
}

/// A key as listed; `key` is present only in the answer to its creation.
package struct KeyInfo: Codable, Sendable, Equatable {
    package var id: String
    package var name: String
    package var prefix: String
    package var scope: String
    package var ratePerMinute: Int?
    package var createdAt: Date
    package var lastUsedAt: Date?
    package var revoked: Bool
    package var key: String?

    package init(
        id: String, name: String, prefix: String, scope: String, ratePerMinute: Int?, createdAt: Date, lastUsedAt: Date?,
        revoked: Bool, key: String?
    ) {
        self.id = id
        self.name = name
        self.prefix = prefix
        self.scope = scope
        self.ratePerMinute = ratePerMinute
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.revoked = revoked
        self.key = key
    }

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, scope, revoked, key
        case ratePerMinute = "rate_per_minute"
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
    }
}
