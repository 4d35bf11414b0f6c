import FakeHub
import Foundation
import Testing

@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

@Suite("Large files in parallel ranges")
struct RangedDownloadTests {
    static let ranged: @Sendable (inout PullConfiguration) -> Void = { configuration in
        configuration.rangeThreshold = 1 << 20
        configuration.parallelRanges = 4
    }

    @Test("a large file comes as 4 ranges at once, reassembled and verified")
    func ranges() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            try await withPullService(hub: hub, configure: Self.ranged) { harness in
                let path = try await harness.pull("acme/tiny")
                let size = 3 << 20
                let quarter = size / 4
                let ranges = Set(hub.requests.filter { $0.origin == .cdn }.compactMap(\.range))
                #expect(ranges == Set((0..<4).map { "bytes=\($0 * quarter)-\(($0 + 1) * quarter - 1)" }))
                #expect(hub.servedBytes("model.safetensors") == size)
                #expect(try Data(contentsOf: URL(filePath: path).appending(path: "model.safetensors")) == commit.files[3].data)
                #expect(harness.temporaryFiles().isEmpty, "no partial file or range plan left")
            }
        }
    }

    @Test("a server that answers a range with the rest of the file is cut off once the range is in")
    func overlongRange() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            // The bytes after each range come after 30 s; the stall timeout is longer, so a fetcher that waited
            // for them would read them all (served bytes > the file).
            hub.addFault(.overlongRange(path: "model.safetensors", seconds: 30, times: .max))
            try await withPullService(
                hub: hub,
                configure: {
                    Self.ranged(&$0)
                    $0.stallTimeout = .seconds(120)
                }
            ) { harness in
                let path = try await harness.pull("acme/tiny")
                #expect(hub.servedBytes("model.safetensors") == 3 << 20, "each range read to its end and no further")
                #expect(try Data(contentsOf: URL(filePath: path).appending(path: "model.safetensors")) == commit.files[3].data)
            }
        }
    }

    @Test("a cut range resumes on its own, refetching nothing")
    func rangeResume() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            hub.addFault(.cutBody(path: "model.safetensors", afterBytes: 300_000, times: 2))
            try await withPullService(hub: hub, configure: Self.ranged) { harness in
                let path = try await harness.pull("acme/tiny")
                #expect(hub.servedBytes("model.safetensors") == 3 << 20, "no byte fetched twice")
                #expect(try Data(contentsOf: URL(filePath: path).appending(path: "model.safetensors")) == commit.files[3].data)
            }
        }
    }

    @Test("after a restart every range continues from the plan kept beside the partial file")
    func rangeResumeAcrossRestart() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            hub.addFault(.cutBody(path: "model.safetensors", afterBytes: 300_000, times: 1))
            let root = FileManager.default.temporaryDirectory.appending(path: "modeld-ranges-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: root) }
            let recorded = Locked<Int64>(0)
            try await withPullService(
                hub: hub, dataRoot: root,
                configure: {
                    Self.ranged(&$0)
                    $0.retry.maxAttempts = 1
                }
            ) { harness in
                let error = try #require(await harness.pullError("acme/tiny"))
                #expect(error.code == .network)
                let plan = try #require(harness.temporaryFiles().first { $0.hasSuffix(".part.ranges") })
                let partial = harness.data.tmp.appending(path: String(plan.dropLast(".ranges".count)))
                recorded.withLock { $0 = RangePlan.bytesOnDisk(partial: partial) }
            }
            let onDisk = recorded.withLock { $0 }
            #expect(onDisk >= 300_000)
            hub.resetCounters()
            try await withPullService(hub: hub, dataRoot: root, configure: Self.ranged) { harness in
                let path = try await harness.pull("acme/tiny")
                #expect(Int64(hub.servedBytes("model.safetensors")) == Int64(3 << 20) - onDisk, "only the missing bytes are fetched")
                #expect(try Data(contentsOf: URL(filePath: path).appending(path: "model.safetensors")) == commit.files[3].data)
            }
        }
    }

    @Test("a corrupted range fails the whole-file hash and the file is fetched again")
    func corruptRange() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            hub.addFault(.corrupt(path: "model.safetensors", times: 1))
            try await withPullService(hub: hub, configure: Self.ranged) { harness in
                let path = try await harness.pull("acme/tiny")
                #expect(hub.servedBytes("model.safetensors") == 2 * (3 << 20))
                #expect(try Data(contentsOf: URL(filePath: path).appending(path: "model.safetensors")) == commit.files[3].data)
            }
        }
    }
}
