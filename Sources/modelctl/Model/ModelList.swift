import ArgumentParser
import Foundation
import ModeldAPI

/// `modelctl list`: the catalog and what this host has of each model.
struct ModelList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List catalog models and local versions.")

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() async throws {
        let models: [CatalogModelInfo]
        do {
            models = try await global.client().models()
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json {
            let data = try WireJSON.encoder().encode(models)
            print(String(decoding: data, as: UTF8.self))
            return
        }
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
    }
}

/// Aligns columns with two spaces between them.
func table(_ rows: [[String]]) -> String {
    guard let width = rows.map(\.count).max() else { return "" }
    let widths = (0..<width).map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
    return rows.map { row in
        row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
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
    return unit == 0 ? "\(bytes) B" : String(format: value >= 100 ? "%.0f %@" : "%.1f %@", value, units[unit])
}
