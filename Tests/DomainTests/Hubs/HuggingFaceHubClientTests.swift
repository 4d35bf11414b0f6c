import FakeHub
import Foundation
import Testing

@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

/// Whether `python3` can import huggingface_hub (`pip install huggingface_hub`).
let pythonHasHuggingFaceHub: Bool = {
    let process = Process()
    process.executableURL = URL(filePath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import huggingface_hub"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    do {
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus == 0
    } catch {
        return false
    }
}()

private let checkScript = """
    import hashlib, json, os, sys
    from huggingface_hub import scan_cache_dir, snapshot_download
    cache, repo, revision = sys.argv[1], sys.argv[2], sys.argv[3]
    info = scan_cache_dir(cache)
    found = {r.repo_id: r for r in info.repos}
    out = {"repos": sorted(found), "warnings": [str(w) for w in info.warnings], "revisions": {}}
    if repo in found:
        for rev in found[repo].revisions:
            out["revisions"][rev.commit_hash] = {"refs": sorted(rev.refs), "files": sorted(str(f.file_path.relative_to(rev.snapshot_path)) for f in rev.files)}
    path = snapshot_download(repo, revision=revision, local_files_only=True)
    files = {}
    for root, dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                files[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    out["path"] = path
    out["files"] = files
    print(json.dumps(out))
    """

@Suite("The cache read by the real huggingface_hub client")
struct HuggingFaceHubClientTests {
    struct Report: Decodable {
        struct Revision: Decodable {
            var refs: [String]
            var files: [String]
        }
        var repos: [String]
        var warnings: [String]
        var revisions: [String: Revision]
        var path: String
        var files: [String: String]
    }

    @Test(
        "scan_cache_dir sees the repo and revision; offline snapshot_download returns the snapshot with the right bytes",
        .enabled(if: pythonHasHuggingFaceHub, "needs python3 with huggingface_hub (pip install huggingface_hub)"))
    func offlineLoad() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            try await withPullService(hub: hub) { harness in
                let path = try await harness.pull("acme/tiny")
                for revision in ["main", commit.sha] {
                    let report = try await offPool { try runCheck(cache: harness.hubCache.path, repo: "acme/tiny", revision: revision) }
                    #expect(report.repos == ["acme/tiny"])
                    #expect(report.warnings.isEmpty)
                    #expect(report.revisions[commit.sha]?.refs == ["main"])
                    #expect(report.revisions[commit.sha]?.files == ["config.json", "model.safetensors", "sub/extra.txt", "tokenizer.json"])
                    #expect(URL(filePath: report.path).standardizedFileURL.path == URL(filePath: path).standardizedFileURL.path)
                    let expected = Dictionary(
                        uniqueKeysWithValues: commit.files.filter { $0.path != "pytorch_model.bin" }.map { ($0.path, $0.sha256) })
                    #expect(report.files == expected)
                }
            }
        }
    }

    @Test(
        "the fake hub speaks the protocol the real client expects: snapshot_download against it gets the same files",
        .enabled(if: pythonHasHuggingFaceHub, "needs python3 with huggingface_hub (pip install huggingface_hub)"))
    func fakeHubFidelity() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit], gated: true)
            let cache = FileManager.default.temporaryDirectory.appending(path: "hf-client-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: cache) }
            let script = """
                import sys
                from huggingface_hub import snapshot_download
                print(snapshot_download(sys.argv[1], cache_dir=sys.argv[2], ignore_patterns=["*.bin"]))
                """
            let output = try await offPool {
                try runPython(
                    script, arguments: ["acme/tiny", cache.path],
                    environment: ["HF_ENDPOINT": hub.endpoint, "HF_TOKEN": FakeHub.validToken, "HF_HUB_DISABLE_XET": "1"])
            }
            let path = output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(path.hasSuffix("models--acme--tiny/snapshots/\(commit.sha)"))
            for file in commit.files where file.path != "pytorch_model.bin" {
                #expect(try Data(contentsOf: URL(filePath: path).appending(path: file.path)) == file.data, "\(file.path)")
            }
            #expect(hub.requests.filter { $0.origin == .cdn }.allSatisfy { $0.authorization == nil })
        }
    }

    private func runPython(_ script: String, arguments: [String], environment extra: [String: String]) throws -> String {
        let process = Process()
        process.executableURL = URL(filePath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["HF_HUB_DISABLE_TELEMETRY"] = "1"
        environment.merge(extra) { _, new in new }
        process.environment = environment
        let output = Pipe()
        let errors = FileManager.default.temporaryDirectory.appending(path: "py-err-\(UUID().uuidString)")
        FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        process.standardOutput = output
        process.standardError = try FileHandle(forWritingTo: errors)
        try process.run()
        let data = (try? output.fileHandleForReading.readToEnd()) ?? Data()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            Issue.record("python failed: \((try? String(contentsOf: errors, encoding: .utf8)) ?? "")")
            throw PullError(.invalidResponse, "python failed")
        }
        return String(decoding: data, as: UTF8.self)
    }

    func runCheck(cache: String, repo: String, revision: String) throws -> Report {
        let process = Process()
        process.executableURL = URL(filePath: "/usr/bin/env")
        process.arguments = ["python3", "-c", checkScript, cache, repo, revision]
        var environment = ProcessInfo.processInfo.environment
        environment["HF_HUB_OFFLINE"] = "1"
        environment["HF_HUB_CACHE"] = cache
        environment["HF_HUB_DISABLE_TELEMETRY"] = "1"
        process.environment = environment
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let data = (try? output.fileHandleForReading.readToEnd()) ?? Data()
        let errorText = String(decoding: (try? errors.fileHandleForReading.readToEnd()) ?? Data(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            Issue.record("huggingface_hub failed: \(errorText)")
            throw PullError(.invalidResponse, "python check failed")
        }
        return try JSONDecoder().decode(Report.self, from: data)
    }
}

/// Runs blocking work (a child process) on its own thread: blocking Swift's two-thread cooperative pool
/// here would starve the fake hub's handlers running in the same process.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}
