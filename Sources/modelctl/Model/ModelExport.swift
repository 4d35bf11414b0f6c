import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl export REF -o FILE`: writes a local version as an archive, for a host without a hub.
struct ModelExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a local model version to an archive (tar, tar.gz, tar.zst or zip by the extension).",
        discussion: """
            The archive holds modeld-manifest.json (repository, source, revision, commit, every file with its \
            size and hash) and the version's files; `modelctl import FILE` on another host registers it. The \
            daemon streams the archive; FILE appears only once it is complete.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Catalog ref or repository id.") var ref: String
    @Option(name: .long, help: "huggingface (default) or modelscope.") var source: String?
    @Option(name: .long, help: "The commit (or a unique prefix) or revision to export (default: the newest ready version).")
    var revision: String?
    @Option(name: [.short, .customLong("output")], help: "The archive to write: .tar, .tar.gz (.tgz), .tar.zst (.tzst) or .zip.")
    var output: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        guard ArchiveFormat(fileName: output) != nil else {
            throw ValidationError("cannot tell the archive format from \"\(output)\": name it .tar, .tar.gz, .tar.zst or .zip")
        }
    }

    func run() async throws {
        let format = ArchiveFormat(fileName: output)!.rawValue
        var query = ["format=\(format)"]
        if let source { query.append("source=\(queryValue(source))") }
        if let revision { query.append("revision=\(queryValue(revision))") }
        let path = "/api/v1/models/\(pathComponent(ref))/export?" + query.joined(separator: "&")
        let destination = URL(filePath: output).standardizedFileURL.path
        do {
            try await global.client().download(path, to: destination)
        } catch {
            throw ModelctlExit.fail(error)
        }
        var info = stat()
        let size = stat(destination, &info) == 0 ? Int64(info.st_size) : 0
        if json {
            printJSON(["path": destination, "format": format, "bytes": "\(size)"])
        } else {
            print("wrote \(destination) (\(formatBytes(size)))")
        }
    }
}

/// Percent-encodes a query value.
func queryValue(_ text: String) -> String {
    percentEncoded(text) { isUnreserved($0) || $0 == UInt8(ascii: ":") }
}
