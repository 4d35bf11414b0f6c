import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl rm REF`: removes local versions and the blobs nothing else uses.
struct ModelRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove a local model version (every version without --revision).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Catalog ref or repository id.") var ref: String
    @Option(name: .long, help: "huggingface (default) or modelscope.") var source: String?
    @Option(name: .long, help: "The commit (or a unique prefix) or revision to remove.") var revision: String?
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let result: RemoveResult
        do {
            result = try await global.client().call(
                "POST", "/api/v1/models/remove", body: VersionSelector(model: ref, source: source, revision: revision))
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(result) }
        for version in result.removed {
            print("removed \(version.repo)@\(version.commit.prefix(12)) (\(version.source), \(formatBytes(version.sizeBytes)))")
        }
    }
}

/// `modelctl verify REF`: re-hashes local versions and reports damage.
struct ModelVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Re-hash a local model version (every version without --revision); exit 1 on damage.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Catalog ref or repository id.") var ref: String
    @Option(name: .long, help: "huggingface (default) or modelscope.") var source: String?
    @Option(name: .long, help: "The commit (or a unique prefix) or revision to verify.") var revision: String?
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let results: [VerifyResult]
        do {
            results = try await global.client().call(
                "POST", "/api/v1/models/verify", body: VersionSelector(model: ref, source: source, revision: revision))
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json {
            printJSON(results)
        } else {
            for result in results {
                let head = "\(result.repo)@\(result.commit.prefix(12)): \(result.filesChecked) files, \(formatBytes(result.bytesChecked))"
                print(result.intact ? "\(head): intact" : "\(head): DAMAGED")
                for line in result.damage { print("  \(line)") }
            }
        }
        if results.contains(where: { !$0.intact }) { throw ExitCode(1) }
    }
}

/// Prints a value as the wire JSON.
func printJSON(_ value: some Encodable) {
    let encoder = WireJSON.encoder()
    encoder.outputFormatting.insert(.prettyPrinted)
    if let data = try? encoder.encode(value) { print(String(decoding: data, as: UTF8.self)) }
}
