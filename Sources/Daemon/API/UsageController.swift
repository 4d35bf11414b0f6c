import Foundation
import Hummingbird
import ModelStore
import ModeldAPI

/// `GET /api/v1/usage?from=&to=&group_by=key|model|backend|day`: the usage of requests that reached a backend,
/// summed per group (``UsageLedger``). `from` and `to` are UTC days (`2026-12-01`) or times (`2026-12-01T12:00:00Z`);
/// `to` is exclusive. By default: the 30 days up to the end of today (UTC).
struct UsageController {
    let store: Store
    let usage: UsageLedger

    func addRoutes(to group: RouterGroup<DaemonRequestContext>) {
        group.get(use: report)
    }

    @Sendable func report(_ request: Request, context: DaemonRequestContext) async throws -> Envelope<UsageReport> {
        let query = request.uri.queryParameters
        let grouping = try query["group_by"].map { text in
            guard let grouping = UsageGrouping(rawValue: String(text)) else {
                throw APIError.badRequest("group_by must be one of \(UsageGrouping.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return grouping
        }
        let (today, _) = UsageLedger.period(usage.now())
        let to = try query["to"].map { try Self.time(String($0), name: "to") } ?? UsageLedger.dayStart(today + 1)
        let from = try query["from"].map { try Self.time(String($0), name: "from") } ?? to.addingTimeInterval(-30 * 86400)
        guard from < to else { throw APIError.badRequest("from must be before to") }
        // What has been recorded is counted, written or not.
        await usage.flushed()
        let sums = try await store.usageSums(from: from, to: to, groupedBy: grouping)
        let names = grouping == .key ? Dictionary(try await store.apiKeys().map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first }) : [:]
        let groups = sums.map { sum in
            UsageGroup(
                group: grouping == nil ? "total" : grouping == .key && sum.group.isEmpty ? "none" : sum.group, name: names[sum.group],
                requests: sum.requests, errors: sum.errors, promptTokens: sum.promptTokens, completionTokens: sum.completionTokens, cost: sum.cost,
                meanLatencyMs: sum.requests > 0 ? sum.latencyMs / Double(sum.requests) : 0)
        }
        return Envelope(requestID: context.id, data: UsageReport(from: from, to: to, groupBy: grouping?.rawValue, groups: groups))
    }

    /// `2026-12-01` (the start of that UTC day) or `2026-12-01T12:00:00Z`, read with the C library.
    static func time(_ text: String, name: String) throws -> Date {
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int32? {
            guard range.upperBound <= bytes.count, bytes[range].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
            return Int32(String(decoding: bytes[range], as: UTF8.self))
        }
        let dayOnly = bytes.count == 10
        guard
            dayOnly
                || bytes.count == 20 && bytes[10] == UInt8(ascii: "T") && bytes[13] == UInt8(ascii: ":") && bytes[16] == UInt8(ascii: ":")
                    && bytes[19] == UInt8(ascii: "Z"),
            bytes.count >= 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), (1...12).contains(month), (1...31).contains(day)
        else {
            throw APIError.badRequest("\(name) must be a UTC day (2026-12-01) or time (2026-12-01T12:00:00Z)")
        }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        if !dayOnly {
            guard let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19), hour < 24, minute < 60, second < 61 else {
                throw APIError.badRequest("\(name) must be a UTC day (2026-12-01) or time (2026-12-01T12:00:00Z)")
            }
            parts.tm_hour = hour
            parts.tm_min = minute
            parts.tm_sec = second
        }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }
}
