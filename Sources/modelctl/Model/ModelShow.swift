import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl show REF`: the catalog entry, local versions and runs of one model.
struct ModelShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a model: catalog entry, local versions, runs.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Catalog ref or repository id.") var ref: String
    @Option(name: .long, help: "huggingface (default) or modelscope.") var source: String?
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let detail: ModelDetail
        do {
            let query = source.map { "?source=\($0)" } ?? ""
            detail = try await global.client().call("GET", "/api/v1/models/\(pathComponent(ref))\(query)")
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(detail) }
        print("\(detail.ref) -> \(detail.repo) (\(detail.source))")
        if let entry = detail.catalog {
            print("\(entry.name): \(entry.description)")
            print(
                "engines: \(entry.engines.joined(separator: ", ")) (default \(entry.defaultEngine)); formats: \(entry.formats.joined(separator: ", "))"
            )
            print("sizes: " + entry.sizes.map { "\($0.ref) [\($0.state)]" }.joined(separator: ", "))
        }
        print("")
        if detail.versions.isEmpty {
            print("no local versions (pull with `modelctl pull \(detail.ref)`)")
        } else {
            var rows = [["REVISION", "COMMIT", "SIZE", "STATE", "PATH"]]
            for version in detail.versions {
                rows.append([version.revision, String(version.commit.prefix(12)), formatBytes(version.sizeBytes), version.state, version.path ?? "-"])
            }
            print(table(rows))
        }
        if !detail.runs.isEmpty {
            print("")
            var rows = [["RUN_ID", "NAME", "ENGINE", "STATE", "ENDPOINT"]]
            for run in detail.runs { rows.append([run.runID, run.name, run.engine, run.state, run.endpoint ?? "-"]) }
            print(table(rows))
        }
    }
}
