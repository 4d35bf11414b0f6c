import Foundation
import GRDB
import ModeldAPI

/// One request that reached a backend, as the usage ledger keeps it (a row of `usage`).
package struct UsageRecord: Sendable, Hashable {
    package var at: Date
    /// The API key's id; '' when the request used none.
    package var keyID: String
    package var model: String
    /// `local:<run name>` (or `upstream:<name>`).
    package var backend: String
    /// The route the client called (`/v1/chat/completions`, `/api/v1/llm/chat`, `/api/chat`).
    package var route: String
    package var promptTokens: Int
    package var completionTokens: Int
    package var latencyMs: Double
    package var status: Int
    package var cost: Double

    package init(
        at: Date, keyID: String, model: String, backend: String, route: String, promptTokens: Int, completionTokens: Int, latencyMs: Double,
        status: Int, cost: Double
    ) {
        self.at = at
        self.keyID = keyID
        self.model = model
        self.backend = backend
        self.route = route
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.latencyMs = latencyMs
        self.status = status
        self.cost = cost
    }
}

/// What usage totals are grouped by.
package enum UsageGrouping: String, Sendable, CaseIterable {
    case key, model, backend, day

    /// The group's column in `usage` and in `usage_daily`.
    fileprivate var columns: (raw: String, daily: String) {
        switch self {
        case .key: ("key_id", "key_id")
        case .model: ("model", "model")
        case .backend: ("backend", "backend")
        case .day: ("substr(at, 1, 10)", "day")
        }
    }
}

/// The sums of one group of usage.
package struct UsageSum: Sendable, Hashable {
    /// The key id, model, backend or day (`yyyy-MM-dd`); '' for the total of everything.
    package var group: String
    package var requests: Int
    /// Requests answered with a status of 400 or more.
    package var errors: Int
    package var promptTokens: Int
    package var completionTokens: Int
    package var cost: Double
    /// Summed over the requests (divide by `requests` for the mean).
    package var latencyMs: Double
}

/// A key's use in the current UTC day and month, which its quotas are checked against.
package struct KeyUsage: Sendable, Hashable {
    package var dayTokens = 0
    package var monthTokens = 0
    package var monthCost = 0.0

    package init(dayTokens: Int = 0, monthTokens: Int = 0, monthCost: Double = 0) {
        self.dayTokens = dayTokens
        self.monthTokens = monthTokens
        self.monthCost = monthCost
    }
}

extension Store {
    /// Appends usage rows in one transaction, without waiting for it (as ``write(_:completion:)``), with one prepared
    /// statement: a row costs a few microseconds of the writer's time, not a record encoding.
    package func insertUsage(_ records: [UsageRecord], completion: @escaping @Sendable (Result<Void, any Error>) -> Void) {
        write(
            { db in
                let statement = try db.cachedStatement(
                    sql: """
                        INSERT INTO usage (at, key_id, model, backend, route, prompt_tokens, completion_tokens, latency_ms, status, cost)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """)
                for record in records {
                    try statement.execute(arguments: [
                        StoreDate.text(record.at), record.keyID, record.model, record.backend, record.route, record.promptTokens,
                        record.completionTokens, record.latencyMs, record.status, record.cost,
                    ])
                }
            }, completion: completion)
    }

    /// Sums usage in `[from, to)`, grouped; the rows rolled up per day count from their day's start. Sorted by group.
    /// - Parameter grouping: nil for one total (group '').
    package func usageSums(from: Date, to: Date, groupedBy grouping: UsageGrouping?) async throws -> [UsageSum] {
        let (raw, daily) = grouping?.columns ?? ("''", "''")
        let sql = """
            SELECT g, SUM(requests), SUM(errors), SUM(prompt), SUM(completion), SUM(cost), SUM(latency) FROM (
                SELECT \(raw) AS g, 1 AS requests, status >= 400 AS errors, prompt_tokens AS prompt,
                    completion_tokens AS completion, cost, latency_ms AS latency
                FROM usage WHERE at >= ? AND at < ?
                UNION ALL
                SELECT \(daily), requests, errors, prompt_tokens, completion_tokens, cost, latency_ms
                FROM usage_daily WHERE day || ' 00:00:00.000' >= ? AND day || ' 00:00:00.000' < ?
            ) GROUP BY g ORDER BY g
            """
        let bounds = [StoreDate.text(from), StoreDate.text(to)]
        return try await read { db in
            try Row.fetchAll(db, sql: sql, arguments: StatementArguments(bounds + bounds)).map { row in
                UsageSum(
                    group: row[0] ?? "", requests: row[1] ?? 0, errors: row[2] ?? 0, promptTokens: row[3] ?? 0, completionTokens: row[4] ?? 0,
                    cost: row[5] ?? 0, latencyMs: row[6] ?? 0)
            }
        }
    }

    /// Each key's tokens since `dayStart` and tokens and cost since `monthStart` (both UTC), from the rows and
    /// the daily roll-ups: what the daemon's quota counters start from.
    package func keyUsage(dayStart: Date, monthStart: Date) async throws -> [String: KeyUsage] {
        let day = StoreDate.text(dayStart), month = StoreDate.text(monthStart)
        let sql = """
            SELECT key_id, SUM(CASE WHEN at >= ? THEN tokens ELSE 0 END), SUM(tokens), SUM(cost) FROM (
                SELECT key_id, at, prompt_tokens + completion_tokens AS tokens, cost FROM usage WHERE at >= ? AND key_id != ''
                UNION ALL
                SELECT key_id, day || ' 00:00:00.000', prompt_tokens + completion_tokens, cost FROM usage_daily
                WHERE day || ' 00:00:00.000' >= ? AND key_id != ''
            ) GROUP BY key_id
            """
        return try await read { db in
            var usage: [String: KeyUsage] = [:]
            for row in try Row.fetchAll(db, sql: sql, arguments: [day, month, month]) {
                usage[row[0]] = KeyUsage(dayTokens: row[1] ?? 0, monthTokens: row[2] ?? 0, monthCost: row[3] ?? 0)
            }
            return usage
        }
    }

    /// Sums the rows from before `cutoff` into `usage_daily`, one row per (day, key, model, backend), and deletes
    /// them, in one transaction. - Returns: how many rows were rolled up.
    @discardableResult
    package func rollUpUsage(before cutoff: Date) async throws -> Int {
        let limit = StoreDate.text(cutoff)
        return try await write { db in
            try db.execute(
                sql: """
                    INSERT INTO usage_daily (day, key_id, model, backend, requests, errors, prompt_tokens, completion_tokens, latency_ms, cost)
                    SELECT substr(at, 1, 10), key_id, model, backend, COUNT(*), SUM(status >= 400), SUM(prompt_tokens),
                        SUM(completion_tokens), SUM(latency_ms), SUM(cost)
                    FROM usage WHERE at < ? GROUP BY 1, 2, 3, 4
                    ON CONFLICT (day, key_id, model, backend) DO UPDATE SET
                        requests = requests + excluded.requests, errors = errors + excluded.errors,
                        prompt_tokens = prompt_tokens + excluded.prompt_tokens,
                        completion_tokens = completion_tokens + excluded.completion_tokens,
                        latency_ms = latency_ms + excluded.latency_ms, cost = cost + excluded.cost
                    """, arguments: [limit])
            try db.execute(sql: "DELETE FROM usage WHERE at < ?", arguments: [limit])
            return db.changesCount
        }
    }

    /// The number of usage rows not rolled up yet, and of daily roll-up rows.
    package func usageRowCounts() async throws -> (rows: Int, daily: Int) {
        try await read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM usage") ?? 0, try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM usage_daily") ?? 0)
        }
    }
}
