import FakeHub
import Foundation
import Testing

@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

@Suite("ModelScope pulls against the fake hub")
struct ModelScopePullTests {
    static func commit(_ config: String = "{}", weights: Data = testBytes(2 << 20, seed: 11)) -> FakeCommit {
        FakeCommit(files: [
            FakeFile(".gitattributes", "*.safetensors filter=lfs\n"),
            FakeFile("configuration.json", config),
            FakeFile("model.safetensors", weights),
            FakeFile("deep/dir/a.txt", "a"),
            FakeFile("deep/b.txt", "b"),
        ])
    }

    @Test("files land in <data>/modelscope/<owner>/<name>/<version>/ as links into .blobs, verified by sha256")
    func layout() async throws {
        try await FakeHub.withRunning { hub in
            let commit = Self.commit()
            hub.addModelScopeRepo("qwen/tiny", commits: [commit])
            try await withPullService(hub: hub, token: "ms-secret") { harness in
                let path = try await harness.pull("qwen/tiny", source: .modelscope)
                let repoDir = harness.data.modelScope.appending(path: "qwen/tiny")
                #expect(path.hasPrefix(repoDir.path))
                #expect(URL(filePath: path).lastPathComponent.count == 40)
                let files = Dictionary(uniqueKeysWithValues: commit.files.map { ($0.path, $0) })
                #expect(readLink(URL(filePath: path).appending(path: "model.safetensors")) == "../.blobs/\(files["model.safetensors"]!.sha256)")
                #expect(readLink(URL(filePath: path).appending(path: "deep/dir/a.txt")) == "../../../.blobs/\(files["deep/dir/a.txt"]!.sha256)")
                #expect(try Data(contentsOf: URL(filePath: path).appending(path: "model.safetensors")) == files["model.safetensors"]!.data)
                #expect(!FileManager.default.fileExists(atPath: path + "/.gitattributes"))
                let version = try #require(try await harness.store.versions(source: "modelscope", repo: "qwen/tiny").first)
                #expect(version.version.state == .ready)
                #expect(version.version.requestedRevision == "master")
                let records = try await harness.store.files(versionID: version.version.id!)
                #expect(records.count == 4)
                #expect(records.allSatisfy { $0.hashKind == "sha256" && $0.sourceCommit == commit.sha })
                let hubRequests = hub.requests.filter { $0.origin == .hub }
                #expect(hubRequests.allSatisfy { $0.cookie == "m_session_id=ms-secret" && $0.authorization == "Bearer ms-secret" })
                #expect(hub.requests.filter { $0.origin == .cdn }.allSatisfy { $0.authorization == nil && $0.cookie == nil })

                // Same content again: a no-op; changed content: a new version beside, sharing blobs.
                hub.resetCounters()
                try await harness.pull("qwen/tiny", source: .modelscope)
                #expect(!hub.requests.contains { $0.query?.contains("FilePath") == true })
            }
        }
    }

    @Test("a listing of exactly the limit is listed again per directory with Root=")
    func truncatedListing() async throws {
        try await FakeHub.withRunning { hub in
            hub.addModelScopeRepo("qwen/tiny", commits: [Self.commit()])
            hub.setModelScopeListingLimit(5)
            try await withPullService(hub: hub, configure: { $0.modelScopeListingLimit = 5 }) { harness in
                let path = try await harness.pull("qwen/tiny", source: .modelscope)
                #expect(FileManager.default.fileExists(atPath: path + "/deep/dir/a.txt"))
                #expect(FileManager.default.fileExists(atPath: path + "/deep/b.txt"))
                #expect(hub.requests.contains { $0.query?.contains("Root=deep") == true })
            }
        }
    }

    @Test("an unknown revision and an unknown model are clear errors; a cut download resumes")
    func errorsAndResume() async throws {
        try await FakeHub.withRunning { hub in
            hub.addModelScopeRepo("qwen/tiny", commits: [Self.commit()], tags: [:])
            hub.addFault(.cutBody(path: "model.safetensors", afterBytes: 700_000))
            try await withPullService(hub: hub) { harness in
                let revision = try #require(await harness.pullError("qwen/tiny", revision: "v9", source: .modelscope))
                #expect(revision.code == .revisionNotFound)
                let missing = try #require(await harness.pullError("qwen/none", source: .modelscope))
                #expect(missing.code == .repoNotFound)
                try await harness.pull("qwen/tiny", source: .modelscope)
                #expect(hub.servedBytes("model.safetensors") == 2 << 20)
            }
        }
    }

    @Test("a changed file makes a new version sharing the unchanged blobs; verify and remove work on ModelScope versions")
    func versionsVerifyRemove() async throws {
        try await FakeHub.withRunning { hub in
            let weights = testBytes(2 << 20, seed: 21)
            let first = Self.commit("{\"v\": 1}", weights: weights)
            let second = Self.commit("{\"v\": 2}", weights: weights)
            hub.addModelScopeRepo("qwen/tiny", commits: [first, second], branches: ["master": first.sha])
            try await withPullService(hub: hub) { harness in
                let firstPath = try await harness.pull("qwen/tiny", source: .modelscope)
                hub.addModelScopeRepo("qwen/tiny", commits: [first, second], branches: ["master": second.sha])
                let secondPath = try await harness.pull("qwen/tiny", source: .modelscope)
                #expect(firstPath != secondPath)
                #expect(hub.servedBytes("model.safetensors") == 2 << 20, "the shared weights came once")
                let versions = try await harness.store.versions(source: "modelscope", repo: "qwen/tiny")
                #expect(versions.count == 2)

                let firstVersion = URL(filePath: firstPath).lastPathComponent
                let blobs = harness.data.modelScope.appending(path: "qwen/tiny/.blobs")
                #expect(try FileManager.default.contentsOfDirectory(atPath: blobs.path).count == 5)
                let weightsBlob = blobs.appending(path: first.files[2].sha256)
                var bytes = try Data(contentsOf: weightsBlob)
                bytes[7] ^= 0x80
                try bytes.write(to: weightsBlob)
                let report = try await harness.service.verify(source: .modelscope, repo: "qwen/tiny", commit: firstVersion)
                #expect(report.damage.map(\.path) == ["model.safetensors"])

                try await harness.service.remove(source: .modelscope, repo: "qwen/tiny", commit: firstVersion)
                #expect(!FileManager.default.fileExists(atPath: firstPath))
                #expect(FileManager.default.fileExists(atPath: weightsBlob.path), "still used by the second version")
                #expect(try FileManager.default.contentsOfDirectory(atPath: blobs.path).count == 4)
                let remaining = try await harness.store.versions(source: "modelscope", repo: "qwen/tiny")
                #expect(remaining.map(\.version.commit) == [URL(filePath: secondPath).lastPathComponent])
            }
        }
    }
}
