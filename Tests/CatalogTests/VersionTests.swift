import FakeHub
import Foundation
import ModeldAPI
import Testing

@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

@Suite("Versions: no-op re-pulls, shared blobs, remove, verify")
struct VersionTests {
    @Test("pulling the same commit twice is a no-op: no file is fetched again")
    func sameCommitTwice() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [tinyCommit()])
            try await withPullService(hub: hub) { harness in
                try await harness.pull("acme/tiny")
                hub.resetCounters()
                let events = await harness.pullEvents("acme/tiny")
                let last = try #require(events.last)
                #expect(last.event == .done)
                #expect(last.alreadyPresent == true)
                #expect(!hub.requests.contains { $0.method == "HEAD" || $0.path.contains("/resolve/") || $0.origin == .cdn })
                #expect(try await harness.store.localVersions().count == 1)
            }
        }
    }

    @Test("identical blobs are stored once across versions, and removing one version keeps the shared blobs")
    func sharedBlobsAndRemove() async throws {
        try await FakeHub.withRunning { hub in
            let weights = testBytes(3 << 20, seed: 7)
            let first = tinyCommit(weights: weights, config: "{\"v\": 1}")
            let second = tinyCommit(weights: weights, config: "{\"v\": 2}")
            hub.addRepo("acme/tiny", commits: [first, second], refs: ["main": first.sha, "stable": first.sha])
            try await withPullService(hub: hub) { harness in
                try await harness.pull("acme/tiny")
                try await harness.pull("acme/tiny", revision: "stable")
                hub.moveRef("acme/tiny", "main", to: second.sha)
                try await harness.pull("acme/tiny")
                #expect(hub.servedBytes("model.safetensors") == 3 << 20, "the shared weights were downloaded once")

                let repoDir = harness.repoDirectory("acme/tiny")
                let blobs = Set(try FileManager.default.contentsOfDirectory(atPath: repoDir.appending(path: "blobs").path))
                let expected = Set((first.files + second.files).filter { $0.path != "pytorch_model.bin" }.map(\.etag))
                #expect(blobs == expected)
                #expect(blobs.count == 5, "4 files each, 3 shared")

                // Remove the first version: its own config blob goes, shared blobs and the second snapshot stay.
                try await harness.service.remove(source: .huggingface, repo: "acme/tiny", commit: first.sha)
                let after = Set(try FileManager.default.contentsOfDirectory(atPath: repoDir.appending(path: "blobs").path))
                #expect(after == Set(second.files.filter { $0.path != "pytorch_model.bin" }.map(\.etag)))
                #expect(!FileManager.default.fileExists(atPath: repoDir.appending(path: "snapshots/\(first.sha)").path))
                #expect(!FileManager.default.fileExists(atPath: repoDir.appending(path: "refs/stable").path), "the ref pointing at it went too")
                #expect(try Data(contentsOf: repoDir.appending(path: "refs/main")) == Data(second.sha.utf8))
                let secondSnapshot = repoDir.appending(path: "snapshots/\(second.sha)")
                #expect(try Data(contentsOf: secondSnapshot.appending(path: "model.safetensors")) == weights)
                #expect(try await harness.store.versions(source: "huggingface", repo: "acme/tiny").map(\.version.commit) == [second.sha])

                try await harness.service.remove(source: .huggingface, repo: "acme/tiny", commit: second.sha)
                #expect(!FileManager.default.fileExists(atPath: repoDir.path), "the last version takes the repository directory with it")
                #expect(try await harness.store.localVersions().isEmpty)
            }
        }
    }

    @Test("verify re-hashes the files and finds a flipped byte")
    func verifyFindsDamage() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            try await withPullService(hub: hub) { harness in
                try await harness.pull("acme/tiny")
                let intact = try await harness.service.verify(source: .huggingface, repo: "acme/tiny", commit: commit.sha)
                #expect(intact.isIntact)
                #expect(intact.filesChecked == 4)

                let blob = harness.repoDirectory("acme/tiny").appending(path: "blobs/\(commit.files[3].sha256)")
                var bytes = try Data(contentsOf: blob)
                bytes[12345] ^= 0x01
                try bytes.write(to: blob)
                let damaged = try await harness.service.verify(source: .huggingface, repo: "acme/tiny", commit: "main")
                #expect(damaged.damage.map(\.path) == ["model.safetensors"])
                let version = try #require(try await harness.store.versions(source: "huggingface", repo: "acme/tiny").first)
                #expect(version.version.state == .damaged)
                #expect(version.version.error?.contains("model.safetensors") == true)

                // Pulling again repairs it.
                try await harness.pull("acme/tiny")
                let repaired = try await harness.service.verify(source: .huggingface, repo: "acme/tiny", commit: commit.sha)
                #expect(repaired.isIntact)
                #expect(try await harness.store.versions(source: "huggingface", repo: "acme/tiny").first?.version.state == .ready)
            }
        }
    }
}
