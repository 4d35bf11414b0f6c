import Catalog
import Downloads
import Foundation
import Hubs
import ModelStore
import ModelText
import ModeldAPI

/// The first entry of every archive modeld writes, `modeld-manifest.json`: which version the archive holds
/// and every file with its size and the hash the hub gave it.
///
/// ```json
/// {"format": "modeld-model-archive", "format_version": 1, "source": "huggingface", "repo": "acme/tiny",
///  "revision": "main", "commit": "0123…", "files": [
///   {"path": "config.json", "size": 23, "hash": "3914be8a…", "hash_kind": "git-sha1"},
///   {"path": "model.safetensors", "size": 26214400, "hash": "5b2c…", "hash_kind": "sha256"}]}
/// ```
/// `hash_kind` is `sha256` or `git-sha1` (Git's blob id, what the Hugging Face hub uses for regular files);
/// ModelScope files also carry `source_commit`, the commit the hub listed for them.
package struct ArchiveManifest: Codable, Sendable, Equatable {
    package static let fileName = "modeld-manifest.json"
    package static let formatName = "modeld-model-archive"
    package static let currentVersion = 1
    /// A manifest larger than this is refused before it is parsed.
    static let maximumSize = 64 << 20

    package struct File: Codable, Sendable, Equatable {
        package var path: String
        package var size: Int64
        package var hash: String
        package var hashKind: HashKind
        package var sourceCommit: String?

        package init(path: String, size: Int64, hash: String, hashKind: HashKind, sourceCommit: String? = nil) {
            self.path = path
            self.size = size
            self.hash = hash
            self.hashKind = hashKind
            self.sourceCommit = sourceCommit
        }

        enum CodingKeys: String, CodingKey {
            case path, size, hash
            case hashKind = "hash_kind"
            case sourceCommit = "source_commit"
        }
    }

    package var format: String
    package var formatVersion: Int
    package var source: ModelSource
    package var repo: String
    package var revision: String
    package var commit: String
    package var files: [File]

    package init(source: ModelSource, repo: String, revision: String, commit: String, files: [File]) {
        self.format = Self.formatName
        self.formatVersion = Self.currentVersion
        self.source = source
        self.repo = repo
        self.revision = revision
        self.commit = commit
        self.files = files
    }

    enum CodingKeys: String, CodingKey {
        case format, source, repo, revision, commit, files
        case formatVersion = "format_version"
    }

    package var totalBytes: Int64 { files.reduce(0) { $0 + $1.size } }

    /// The manifest's JSON, keys sorted, as written into archives.
    package func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted]
        return try encoder.encode(self)
    }

    /// Parses and checks a manifest: known format and version, a valid repository id and commit, safe unique
    /// paths, and hashes of the right shape for their kind.
    /// - Throws: ``ArchiveError`` (`badManifest` or `unsafeEntry`) naming the problem.
    package static func decode(_ data: Data) throws -> ArchiveManifest {
        let manifest: ArchiveManifest
        do {
            manifest = try JSONLimits.decode(ArchiveManifest.self, from: data)
        } catch DecodingError.keyNotFound(let key, let context) {
            throw ArchiveError(.badManifest, "\(fileName) is missing \"\(JSONPath.of(context.codingPath + [key]))\"")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            throw ArchiveError(.badManifest, "\(fileName) has a wrong type at \"\(JSONPath.of(context.codingPath))\"")
        } catch DecodingError.dataCorrupted(let context) {
            let at = context.codingPath.isEmpty ? "" : " at \"\(JSONPath.of(context.codingPath))\""
            throw ArchiveError(.badManifest, "\(fileName) is not valid\(at): \(context.debugDescription)")
        } catch {
            throw ArchiveError(.badManifest, "\(fileName) is not valid JSON: \(error)")
        }
        try manifest.validate()
        return manifest
    }

    private func validate() throws {
        func bad(_ why: String) -> ArchiveError { ArchiveError(.badManifest, "\(Self.fileName): \(why)") }
        guard format == Self.formatName else { throw bad("format is \"\(format)\", expected \"\(Self.formatName)\"") }
        guard formatVersion == Self.currentVersion else {
            throw bad("format_version \(formatVersion) is not supported (this modeld reads version \(Self.currentVersion))")
        }
        do {
            try PullRequest(source: source, repo: repo).validate()
        } catch {
            throw bad("\"\(repo)\" is not a repository id of the form owner/name")
        }
        guard commit.count == 40, commit.allSatisfy(\.isHexDigit), commit == commit.lowercased() else {
            throw bad("commit \"\(commit)\" is not 40 lower-case hex digits")
        }
        guard !revision.isEmpty, (try? HubPath(revision, repo: repo)) != nil else {
            throw bad("revision \"\(revision)\" is not a usable revision name")
        }
        guard !files.isEmpty else { throw bad("it lists no files") }
        var seen = Set<String>()
        for file in files {
            _ = try HubPath(archived: file.path, repo: repo)
            guard seen.insert(file.path).inserted else { throw bad("\(file.path) is listed twice") }
            guard file.size >= 0 else { throw bad("\(file.path) has a negative size") }
            let length = file.hashKind == .sha256 ? 64 : 40
            guard file.hash.count == length, file.hash.allSatisfy(\.isHexDigit), file.hash == file.hash.lowercased() else {
                throw bad("\(file.path) has a \(file.hashKind.rawValue) hash that is not \(length) lower-case hex digits")
            }
            if source == .modelscope, file.hashKind != .sha256 {
                throw bad("\(file.path): ModelScope files are identified by sha256")
            }
        }
        // Paths that are both a file and a directory (`a` and `a/b`) cannot both exist in a snapshot.
        for file in files {
            var prefix = ""
            for component in file.path.split(separator: "/").dropLast() {
                prefix += prefix.isEmpty ? String(component) : "/\(component)"
                if seen.contains(prefix) { throw bad("\(prefix) is listed as a file and is also a directory of \(file.path)") }
            }
        }
        if source == .modelscope {
            let name = ModelScopeCache.versionName(of: files.map { ($0.path, $0.hash, $0.size) })
            guard name == commit else {
                throw bad("commit \(commit) does not match the file list (ModelScope versions are named by it: \(name))")
            }
        }
    }
}
