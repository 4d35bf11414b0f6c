import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl list`: the local model versions, or with `--catalog` the catalog and what this host has of it.
struct ModelList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List local model versions (--catalog: the catalog with local state).")

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "List the catalog (GET /api/v1/models) instead of local versions.")
    var catalog = false

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        do {
            let client = try global.client()
            if catalog {
                let models = try await client.models()
                if json { return printJSON(models) }
                var rows: [[String]] = [["REF", "REPO", "STATE", "COMMIT", "SIZE"]]
                for model in models {
                    for size in model.sizes {
                        let newest = size.versions.first
                        rows.append([
                            size.ref, newest?.repo ?? size.hfRepo, size.state, newest.map { String($0.commit.prefix(12)) } ?? "-",
                            newest.map { formatBytes($0.sizeBytes) } ?? "-",
                        ])
                    }
                }
                print(table(rows))
            } else {
                let versions: [LocalVersionInfo] = try await client.call("GET", "/api/v1/models/local")
                if json { return printJSON(versions) }
                var rows: [[String]] = [["REPO", "SOURCE", "REVISION", "COMMIT", "SIZE", "STATE", "FORMAT", "QUANTIZATION", "PATH"]]
                for version in versions {
                    rows.append([
                        version.repo, version.source, version.revision, String(version.commit.prefix(12)),
                        formatBytes(version.sizeBytes), version.state, version.format ?? "-", version.quantization ?? "-", version.path ?? "-",
                    ])
                }
                print(table(rows))
                if versions.isEmpty {
                    print("(no local models: `modelctl pull qwen2.5:0.5b` pulls one; `modelctl list --catalog` shows the catalog)")
                }
            }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw ModelctlExit.fail(error)
        }
    }
}

/// Aligns columns with two spaces between them.
func table(_ rows: [[String]]) -> String {
    guard let width = rows.map(\.count).max() else { return "" }
    let widths = (0..<width).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[index] - cell.count))
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

/// Bytes as a person reads them: 1.5 GB, 640 MB.
func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000, unit < units.count - 1 {
        value /= 1000
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : "\(fixed(value, digits: value >= 100 ? 0 : 1)) \(units[unit])"
}
