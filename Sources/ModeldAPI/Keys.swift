import FoundationEssentials
import Glibc

/// `POST /api/v1/keys`.
package struct KeyCreateRequest: Codable, Sendable {
    package var name: String
    /// `inference` (default) or `admin`.
    package var scope: String?
    package var ratePerMinute: Int?
    package var tokensPerDay: Int?
    package var tokensPerMonth: Int?
    package var spendCap: Double?
    package var allowedModels: [String]?

    package init(name: String, scope: String? = nil, limits: KeyLimitsRequest = KeyLimitsRequest()) {
        self.name = name
        self.scope = scope
        ratePerMinute = limits.ratePerMinute
        tokensPerDay = limits.tokensPerDay
        tokensPerMonth = limits.tokensPerMonth
        spendCap = limits.spendCap
        allowedModels = limits.allowedModels
    }

    /// The limits the key is created with.
    package var limits: KeyLimitsRequest {
        KeyLimitsRequest(
            ratePerMinute: ratePerMinute, tokensPerDay: tokensPerDay, tokensPerMonth: tokensPerMonth, spendCap: spendCap,
            allowedModels: allowedModels)
    }

    enum CodingKeys: String, CodingKey {
        case name, scope
        case ratePerMinute = "rate_per_minute"
        case tokensPerDay = "tokens_per_day"
        case tokensPerMonth = "tokens_per_month"
        case spendCap = "spend_cap"
        case allowedModels = "allowed_models"
    }
}

/// `PATCH /api/v1/keys/{id}`, and a key's limits at creation: a field left out keeps its value; 0 (or an empty
/// `allowed_models`) removes the limit. Tokens count prompt and completion; days and months are UTC; the spending cap
/// is per month, in the unit of the backends' costs.
package struct KeyLimitsRequest: Codable, Sendable, Equatable {
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

    enum CodingKeys: String, CodingKey {
        case ratePerMinute = "rate_per_minute"
        case tokensPerDay = "tokens_per_day"
        case tokensPerMonth = "tokens_per_month"
        case spendCap = "spend_cap"
        case allowedModels = "allowed_models"
    }
}

/// A key as listed; `key` is present only in the answer to its creation.
package struct KeyInfo: Codable, Sendable, Equatable {
    package var id: String
    package var name: String
    package var prefix: String
    package var scope: String
    package var ratePerMinute: Int?
    package var tokensPerDay: Int?
    package var tokensPerMonth: Int?
    package var spendCap: Double?
    package var allowedModels: [String]?
    package var createdAt: Date
    package var lastUsedAt: Date?
    package var revoked: Bool
    package var key: String?

    package init(
        id: String, name: String, prefix: String, scope: String, limits: KeyLimitsRequest = KeyLimitsRequest(), createdAt: Date,
        lastUsedAt: Date?, revoked: Bool, key: String?
    ) {
        self.id = id
        self.name = name
        self.prefix = prefix
        self.scope = scope
        ratePerMinute = limits.ratePerMinute
        tokensPerDay = limits.tokensPerDay
        tokensPerMonth = limits.tokensPerMonth
        spendCap = limits.spendCap
        allowedModels = limits.allowedModels
        self.createdAt = createdAt
        self.lastUsedAt = lastUsedAt
        self.revoked = revoked
        self.key = key
    }

    enum CodingKeys: String, CodingKey {
        case id, name, prefix, scope, revoked, key
        case ratePerMinute = "rate_per_minute"
        case tokensPerDay = "tokens_per_day"
        case tokensPerMonth = "tokens_per_month"
        case spendCap = "spend_cap"
        case allowedModels = "allowed_models"
        case createdAt = "created_at"
        case lastUsedAt = "last_used_at"
    }
}
