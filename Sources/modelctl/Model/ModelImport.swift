import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl import FILE`, `--hf-cache DIR`, `--dir DIR --name NAME`: registers models that come without a hub.
struct ModelImport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import a model archive, or register models already on the daemon's host.",
        discussion: """
            FILE is an archive `modelctl export` wrote (tar, tar.gz, tar.zst or zip); it is streamed to the daemon, \
            which checks every file against the manifest before anything is registered. --hf-cache registers every \
            model in a Hugging Face hub cache (such as ~/.cache/huggingface/hub) and --dir a plain model directory, \
            both without copying bytes (hard links where the file system allows); the daemon reads those paths itself, \
            so they must be on its host.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The archive to import.") var file: String?
    @Option(name: .customLong("hf-cache"), help: "A Hugging Face hub cache directory to adopt.") var hfCache: String?
    @Option(name: .long, help: "A plain model directory to adopt (with --name).") var dir: String?
    @Option(name: .long, help: "The repository id owner/name to register --dir as.") var name: String?
    @Option(name: .long, help: "The revision to record --dir as (default local).") var revision: String?
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        let chosen = [file != nil, hfCache != nil, dir != nil].filter { $0 }.count
        guard chosen == 1 else { throw ValidationError("give exactly one of FILE, --hf-cache DIR or --dir DIR --name NAME") }
        if dir != nil && name == nil { throw ValidationError("--dir needs --name owner/name") }
        if dir == nil && (name != nil || revision != nil) { throw ValidationError("--name and --revision go with --dir") }
    }

    func run() async throws {
        if let file { return try await importArchive(file) }
        let request: AdoptRequest
        if let hfCache {
            request = AdoptRequest(path: absolute(hfCache), kind: "hf-cache")
        } else {
            request = AdoptRequest(path: absolute(dir!), kind: "dir", name: name, revision: revision)
        }
        let result: AdoptResult
        do {
            result = try await global.client().call("POST", "/api/v1/models/adopt", body: request)
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(result) }
        for version in result.adopted {
            print("ready \(version.repo)@\(version.commit.prefix(12)) (\(version.revision), \(formatBytes(version.sizeBytes))) \(version.path ?? "")")
        }
        for skipped in result.skipped { print("skipped \(skipped.path): \(skipped.reason)") }
        print("\(formatBytes(result.linkedBytes)) linked, \(formatBytes(result.copiedBytes)) copied")
        if result.adopted.isEmpty { throw ExitCode(1) }
    }

    private func importArchive(_ file: String) async throws {
        guard FileManager.default.isReadableFile(atPath: file) else {
            throw ModelctlExit.fail(ValidationError("cannot read \(file)"))
        }
        let result: ImportResult
        do {
            result = try await global.client().upload("/api/v1/models/import", file: file)
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(result) }
        let version = result.version
        print(
            "ready \(version.repo)@\(version.commit.prefix(12)) (\(version.source), \(result.files) files, \(formatBytes(result.bytes))) \(version.path ?? "")"
        )
    }

    private func absolute(_ path: String) -> String {
        URL(filePath: path, relativeTo: URL(filePath: FileManager.default.currentDirectoryPath, directoryHint: .isDirectory))
            .standardizedFileURL.path
    }
}
