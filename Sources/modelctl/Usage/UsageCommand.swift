import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl usage [--by key|model|backend|day] [--from DAY] [--to DAY] [--json]`: tokens, cost, requests and latency
/// of the requests that reached a backend.
struct UsageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "Show token usage, cost and latency, summed per key, model, backend or day.")

    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "Sum per key, model, backend or day (default: one total).") var by: String?
    @Option(name: .long, help: "From this UTC day (2026-12-01) or time (2026-12-01T12:00:00Z); default: 30 days before --to.") var from: String?
    @Option(name: .long, help: "Up to (not including) this UTC day or time; default: the end of today.") var to: String?
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        if let by, !["key", "model", "backend", "day"].contains(by) { throw ValidationError("--by must be key, model, backend or day") }
    }

    func run() async throws {
        let query = [("group_by", by), ("from", from), ("to", to)].compactMap { name, value in
            value.map { "\(name)=\(percentEncoded($0, keeping: isUnreserved))" }
        }
        let report: UsageReport
        do {
            report = try await global.client().call("GET", "/api/v1/usage" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")))
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(report) }
        let first = report.groupBy.map { $0.uppercased() } ?? "TOTAL"
        let byKey = report.groupBy == "key"
        var rows = [[first] + (byKey ? ["NAME"] : []) + ["REQUESTS", "ERRORS", "PROMPT", "COMPLETION", "TOTAL TOKENS", "COST", "MEAN LATENCY"]]
        for group in report.groups {
            rows.append(
                [group.group] + (byKey ? [group.name ?? "-"] : [])
                    + [
                        String(group.requests), String(group.errors), String(group.promptTokens), String(group.completionTokens),
                        String(group.totalTokens), fixed(group.cost, digits: 4), fixed(group.meanLatencyMs, digits: 1) + " ms",
                    ])
        }
        print("usage from \(WireJSON.iso8601(report.from)) to \(WireJSON.iso8601(report.to))")
        print(report.groups.isEmpty ? "no requests" : table(rows))
    }
}
