import FakeHub
import Foundation
import ModeldAPI
import Testing

@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

@Suite("Hugging Face pulls against the fake hub")
struct HuggingFacePullTests {
    @Test("a pull writes the hub cache layout exactly and records a ready version")
    func cacheLayout() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            try await withPullService(hub: hub) { harness in
                let path = try await harness.pull("acme/tiny")
                let repoDir = harness.repoDirectory("acme/tiny")
                #expect(repoDir.lastPathComponent == "models--acme--tiny")
                #expect(path == repoDir.appending(path: "snapshots/\(commit.sha)").path)

                let ref = try Data(contentsOf: repoDir.appending(path: "refs/main"))
                #expect(ref == Data(commit.sha.utf8), "refs/main holds the commit and no newline")

                let files = Dictionary(uniqueKeysWithValues: commit.files.map { ($0.path, $0) })
                let snapshot = URL(filePath: path)
                #expect(readLink(snapshot.appending(path: "config.json")) == "../../blobs/\(files["config.json"]!.gitSHA1)")
                #expect(readLink(snapshot.appending(path: "sub/extra.txt")) == "../../../blobs/\(files["sub/extra.txt"]!.gitSHA1)")
                #expect(readLink(snapshot.appending(path: "model.safetensors")) == "../../blobs/\(files["model.safetensors"]!.sha256)")
                #expect(try Data(contentsOf: snapshot.appending(path: "model.safetensors")) == files["model.safetensors"]!.data)
                #expect(try Data(contentsOf: snapshot.appending(path: "sub/extra.txt")) == files["sub/extra.txt"]!.data)
                #expect(
                    !FileManager.default.fileExists(atPath: snapshot.appending(path: "pytorch_model.bin").path),
                    "the .bin duplicate of the safetensors weights is skipped")

                let blobs = try FileManager.default.contentsOfDirectory(atPath: repoDir.appending(path: "blobs").path).sorted()
                #expect(blobs == ["config.json", "tokenizer.json", "sub/extra.txt", "model.safetensors"].map { files[$0]!.etag }.sorted())
                #expect(harness.temporaryFiles().isEmpty, "no partial file is left behind")

                let versions = try await harness.store.versions(source: "huggingface", repo: "acme/tiny")
                #expect(versions.count == 1)
                let version = try #require(versions.first?.version)
                #expect(version.state == .ready)
                #expect(version.commit == commit.sha)
                #expect(version.requestedRevision == "main")
                let records = try await harness.store.files(versionID: version.id!)
                #expect(records.map(\.path) == ["config.json", "model.safetensors", "sub/extra.txt", "tokenizer.json"])
                #expect(records.first { $0.path == "model.safetensors" }?.hashKind == "sha256")
                #expect(records.first { $0.path == "config.json" }?.hashKind == "git-sha1")
                #expect(records.allSatisfy { $0.verified && $0.hash == files[$0.path]!.etag && $0.size == Int64(files[$0.path]!.data.count) })
            }
        }
    }

    @Test("requests follow the hub protocol (docs/design/hubs.md): revision, tree, HEAD pinned to the commit; Authorization never sent to the CDN")
    func requestSequenceAndAuthorization() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            try await withPullService(hub: hub, token: FakeHub.validToken) { harness in
                try await harness.pull("acme/tiny")
                let requests = hub.requests
                #expect(requests.first?.path == "/api/models/acme/tiny/revision/main")
                #expect(requests.contains { $0.path == "/api/models/acme/tiny/tree/\(commit.sha)" && $0.query?.contains("recursive=true") == true })
                let heads = requests.filter { $0.method == "HEAD" }
                #expect(heads.count == 4)
                #expect(heads.allSatisfy { $0.path.hasPrefix("/acme/tiny/resolve/\(commit.sha)/") })
                let hubRequests = requests.filter { $0.origin == .hub }
                #expect(hubRequests.allSatisfy { $0.authorization == "Bearer \(FakeHub.validToken)" })
                let cdnRequests = requests.filter { $0.origin == .cdn }
                #expect(!cdnRequests.isEmpty, "the LFS file came from the CDN origin")
                #expect(cdnRequests.allSatisfy { $0.authorization == nil }, "no Authorization to another origin")
            }
        }
    }

    @Test("tree pagination with Link rel=next, same-origin redirects, and a percent-encoded revision")
    func paginationRedirectsAndEncoding() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit], refs: ["main": commit.sha, "refs/pr/1": commit.sha])
            hub.setTreePageSize(2)
            hub.setSameOriginRedirects(true)
            try await withPullService(hub: hub) { harness in
                let path = try await harness.pull("acme/tiny", revision: "refs/pr/1")
                let requests = hub.requests
                #expect(requests.first?.path == "/api/models/acme/tiny/revision/refs%2Fpr%2F1")
                #expect(requests.filter { $0.path.contains("/tree/") }.count == 3, "6 entries (5 files, 1 directory) in pages of 2")
                #expect(requests.contains { $0.path.hasPrefix("/api/resolve-cache/models/acme/tiny/") })
                for file in ["config.json", "tokenizer.json", "sub/extra.txt", "model.safetensors"] {
                    #expect(FileManager.default.fileExists(atPath: path + "/" + file))
                }
                let ref = harness.repoDirectory("acme/tiny").appending(path: "refs/refs/pr/1")
                #expect(try Data(contentsOf: ref) == Data(commit.sha.utf8))
            }
        }
    }

    @Test("a commit revision skips the revision call and writes no ref")
    func commitRevision() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            try await withPullService(hub: hub) { harness in
                let path = try await harness.pull("acme/tiny", revision: commit.sha)
                #expect(path.hasSuffix("snapshots/\(commit.sha)"))
                #expect(!hub.requests.contains { $0.path.contains("/revision/") })
                #expect(!FileManager.default.fileExists(atPath: harness.repoDirectory("acme/tiny").appending(path: "refs").path))
            }
        }
    }

    @Test("include and exclude globs choose the files")
    func includeExclude() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [tinyCommit()])
            try await withPullService(hub: hub) { harness in
                let path = try await harness.pull("acme/tiny", include: ["*.json", "sub/"], exclude: ["tokenizer*"])
                let snapshot = URL(filePath: path)
                #expect(FileManager.default.fileExists(atPath: snapshot.appending(path: "config.json").path))
                #expect(FileManager.default.fileExists(atPath: snapshot.appending(path: "sub/extra.txt").path))
                #expect(!FileManager.default.fileExists(atPath: snapshot.appending(path: "tokenizer.json").path))
                #expect(!FileManager.default.fileExists(atPath: snapshot.appending(path: "model.safetensors").path))
            }
        }
    }

    @Test("gated, unknown repository and unknown revision are one-line errors a user can act on")
    func hubErrors() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/gated", commits: [tinyCommit()], gated: true)
            hub.addRepo("acme/tiny", commits: [tinyCommit()])
            let logs = LogCollector()
            try await withPullService(hub: hub, token: "hf_wrong_secret_token", logs: logs) { harness in
                let gated = try #require(await harness.pullError("acme/gated"))
                #expect(gated.code == .gated)
                #expect(gated.message == "model acme/gated is gated: accept its licence at \(hub.endpoint)/acme/gated and set HF_TOKEN")
                #expect(!gated.message.contains("hf_wrong_secret_token"))

                let missing = try #require(await harness.pullError("acme/nope"))
                #expect(missing.code == .repoNotFound)
                #expect(missing.message.contains("acme/nope"))

                for bad in ["acme/tiny?x=1", "acme", "a/b/c", "../etc", "acme/ti ny"] {
                    let invalid = try #require(await harness.pullError(bad))
                    #expect(invalid.message.contains("is not a repository id"))
                }

                let revision = try #require(await harness.pullError("acme/tiny", revision: "v9"))
                #expect(revision.code == .revisionNotFound)
                #expect(revision.message == "revision v9 not found in acme/tiny on \(hub.endpoint)")
                for error in [gated, missing, revision] { #expect(!error.message.contains("\n")) }
                #expect(try await harness.store.localVersions().isEmpty, "nothing is recorded, let alone ready")
            }
            #expect(logs.all.contains { $0.contains("pull failed") && $0.contains("code=gated") })
            #expect(!logs.all.contains { $0.contains("hf_wrong_secret_token") }, "the token never reaches the logs")
            try await withPullService(hub: hub, token: FakeHub.validToken) { harness in
                try await harness.pull("acme/gated")
            }
        }
    }

    @Test("hostile file names are refused and nothing is written outside the cache", arguments: ["../x", "/etc/x", "a/../../x", "a\\b", ""])
    func hostileNames(name: String) async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("evil/repo", commits: [FakeCommit(files: [FakeFile("config.json", "{}"), FakeFile(name, "pwned", lfs: false)])])
            try await withPullService(hub: hub) { harness in
                let error = try #require(await harness.pullError("evil/repo"))
                #expect(error.code == .unsafePath, "\(error)")
                #expect(!hub.requests.contains { $0.method == "HEAD" }, "refused before any file request")
                #expect(try await harness.store.localVersions().isEmpty)
                #expect(!FileManager.default.fileExists(atPath: harness.data.root.appending(path: "huggingface/x").path))
            }
        }
    }

    @Test("a file name that would pass through a symlink already in the snapshot is refused")
    func escapeThroughSymlink() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("evil/link", commits: [FakeCommit(files: [FakeFile("a", "file"), FakeFile("a/b", "inside")])])
            try await withPullService(hub: hub, configure: { $0.concurrency = 1 }) { harness in
                let error = try #require(await harness.pullError("evil/link"))
                #expect(error.code == .unsafePath, "\(error)")
                let versions = try await harness.store.localVersions()
                #expect(versions.allSatisfy { $0.version.state != .ready })
            }
        }
    }

    @Test("a revision that moves between calls: the pull stays on the commit it resolved; the new commit becomes a new version")
    func movingRevision() async throws {
        try await FakeHub.withRunning { hub in
            let first = tinyCommit(config: "{\"v\": 1}")
            let second = tinyCommit(config: "{\"v\": 2}")
            hub.addRepo("acme/tiny", commits: [first, second], refs: ["main": first.sha])
            hub.moveRefAfterNextResolve("acme/tiny", "main", to: second.sha)
            try await withPullService(hub: hub) { harness in
                let path = try await harness.pull("acme/tiny")
                #expect(path.hasSuffix(first.sha))
                #expect(hub.requests.filter { $0.method == "HEAD" }.allSatisfy { $0.path.contains("/resolve/\(first.sha)/") })
                #expect(try String(contentsOf: URL(filePath: path).appending(path: "config.json"), encoding: .utf8) == "{\"v\": 1}")

                let newer = try await harness.pull("acme/tiny")
                #expect(newer.hasSuffix(second.sha))
                let refs = try Data(contentsOf: harness.repoDirectory("acme/tiny").appending(path: "refs/main"))
                #expect(refs == Data(second.sha.utf8))
                let versions = try await harness.store.versions(source: "huggingface", repo: "acme/tiny")
                #expect(Set(versions.map(\.version.commit)) == [first.sha, second.sha])
                #expect(versions.allSatisfy { $0.version.state == .ready })
                #expect(FileManager.default.fileExists(atPath: path + "/config.json"), "the old snapshot stays")
            }
        }
    }
}
