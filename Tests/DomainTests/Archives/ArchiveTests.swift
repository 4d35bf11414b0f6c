import FakeHub
import Foundation
import ModeldAPI
import Testing

@testable import Archives
@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

/// What a version looks like in the store and on disk, for comparing two data directories.
private struct VersionShape: Equatable, Sendable {
    var source: String
    var repo: String
    var revision: String
    var commit: String
    var state: VersionState
    var totalBytes: Int64
    /// path, size, hash, kind, verified, source commit — per file.
    var files: [String]
    /// Every entry under the repository's cache directory, with its symlink target (layout, not bytes).
    var layout: [String]
}

private func shape(_ harness: PullHarness, source: ModelSource, repo: String) async throws -> VersionShape {
    let version = try #require(try await harness.store.versions(source: source.rawValue, repo: repo).first)
    let files = try await harness.store.files(versionID: version.version.id!).map {
        "\($0.path) \($0.size) \($0.hash) \($0.hashKind) \($0.verified) \($0.sourceCommit ?? "-")"
    }
    let repoDirectory =
        source == .huggingface
        ? harness.repoDirectory(repo) : ModelScopeCache(root: harness.data.modelScope).repoDirectory(repo)
    var layout: [String] = []
    if let enumerator = FileManager.default.enumerator(atPath: repoDirectory.path) {
        while let relative = enumerator.nextObject() as? String {
            layout.append(relative + (readLink(repoDirectory.appending(path: relative)).map { " -> \($0)" } ?? ""))
        }
    }
    return VersionShape(
        source: version.model.source, repo: version.model.repo, revision: version.version.requestedRevision,
        commit: version.version.commit, state: version.version.state, totalBytes: version.version.totalBytes, files: files,
        layout: layout.sorted())
}

/// Exports into a file and imports it back through file descriptors, as the daemon does through its pipes.
private func export(_ harness: PullHarness, source: ModelSource = .huggingface, repo: String, format: ArchiveFormat, to file: URL) async throws {
    let plan = try await harness.archives.exportPlan(source: source, repo: repo, commit: nil)
    try await offPool {
        let fd = open(file.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        try #require(fd >= 0)
        defer { close(fd) }
        try harness.archives.writeArchive(plan, format: format, to: FileDescriptorStream(fd: fd), cancel: CancellationFlag())
    }
}

private func importFile(_ harness: PullHarness, _ file: URL) async throws -> ImportOutcome {
    try await offPool {
        let fd = open(file.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ArchiveError(.notFound, "cannot open \(file.path)") }
        defer { close(fd) }
        return try harness.archives.importArchiveBlocking(from: FileDescriptorStream(fd: fd), cancel: CancellationFlag())
    }
}

private func importError(_ harness: PullHarness, _ file: URL) async -> ArchiveError? {
    do {
        _ = try await importFile(harness, file)
        return nil
    } catch {
        return error as? ArchiveError
    }
}

/// Everything under a directory, relative paths, sorted.
private func tree(_ url: URL) -> [String] {
    ((FileManager.default.enumerator(atPath: url.path)?.allObjects as? [String]) ?? []).sorted()
}

private func temporaryFile(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appending(path: "modeld-archive-\(UUID().uuidString.prefix(8))-\(name)")
}

@Suite("Model archives: export, import, round trip")
struct ArchiveRoundTripTests {
    /// The tiny repository plus a second path with the same weights (a hard link in tar archives).
    static func commit() -> FakeCommit {
        var commit = tinyCommit()
        commit.files.append(FakeFile("copy/model.safetensors", commit.files.first { $0.path == "model.safetensors" }!.data))
        return commit
    }

    @Test("export then import into a fresh data directory: identical bytes, layout and store records", arguments: ArchiveFormat.allCases)
    func roundTrip(format: ArchiveFormat) async throws {
        try await FakeHub.withRunning { hub in
            let commit = Self.commit()
            hub.addRepo("acme/tiny", commits: [commit])
            let archive = temporaryFile("tiny.\(format.fileExtension)")
            defer { try? FileManager.default.removeItem(at: archive) }
            let original = Locked<VersionShape?>(nil)
            try await withPullService(hub: hub) { harness in
                try await harness.pull("acme/tiny")
                let pulled = try await shape(harness, source: .huggingface, repo: "acme/tiny")
                original.withLock { $0 = pulled }
                try await export(harness, repo: "acme/tiny", format: format, to: archive)
                // Exported again in a later second, the archive is the same to the byte (entries carry the version's
                // ready time, not the export's).
                let second = Int(Date().timeIntervalSince1970)
                while Int(Date().timeIntervalSince1970) == second { try await Task.sleep(for: .milliseconds(20)) }
                let again = temporaryFile("again.\(format.fileExtension)")
                defer { try? FileManager.default.removeItem(at: again) }
                try await export(harness, repo: "acme/tiny", format: format, to: again)
                #expect(try Data(contentsOf: again) == Data(contentsOf: archive), "\(format): two exports differ")
            }
            let requestsBefore = hub.requests.count
            try await withPullService(hub: hub) { harness in
                let outcome = try await importFile(harness, archive)
                #expect(outcome.files == 5)
                #expect(outcome.version.version.state == .ready)
                let imported = try await shape(harness, source: .huggingface, repo: "acme/tiny")
                #expect(imported == original.withLock { $0 })
                let snapshot = URL(filePath: try #require(outcome.version.version.path))
                for file in commit.files where file.path != "pytorch_model.bin" {
                    #expect(try Data(contentsOf: snapshot.appending(path: file.path)) == file.data, "\(file.path)")
                }
                #expect(harness.temporaryFiles().isEmpty, "the staging directory is gone")
                let report = try await harness.service.verify(source: .huggingface, repo: "acme/tiny", commit: "main")
                #expect(report.isIntact && report.filesChecked == 5)
                // Importing the same archive again is harmless: still one ready version.
                _ = try await importFile(harness, archive)
                #expect(try await harness.store.localVersions().count == 1)
            }
            #expect(hub.requests.count == requestsBefore, "the import never touched the hub")
        }
    }

    @Test(
        "the real huggingface_hub reads an imported version offline",
        .enabled(if: pythonHasHuggingFaceHub, "needs python3 with huggingface_hub (pip install huggingface_hub)"))
    func importedVersionLoadsOffline() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            let archive = temporaryFile("tiny.tar.zst")
            defer { try? FileManager.default.removeItem(at: archive) }
            try await withPullService(hub: hub) { harness in
                try await harness.pull("acme/tiny")
                try await export(harness, repo: "acme/tiny", format: .tarZst, to: archive)
            }
            try await withPullService(hub: hub) { harness in
                let outcome = try await importFile(harness, archive)
                let cache = harness.hubCache.path
                let report = try await offPool { try HuggingFaceHubClientTests().runCheck(cache: cache, repo: "acme/tiny", revision: "main") }
                #expect(report.repos == ["acme/tiny"])
                #expect(report.warnings.isEmpty)
                #expect(report.revisions[commit.sha]?.refs == ["main"])
                #expect(
                    URL(filePath: report.path).standardizedFileURL.path
                        == outcome.version.version.path.map { URL(filePath: $0).standardizedFileURL.path })
                let expected = Dictionary(uniqueKeysWithValues: commit.files.filter { $0.path != "pytorch_model.bin" }.map { ($0.path, $0.sha256) })
                #expect(report.files == expected)
            }
        }
    }

    @Test("a ModelScope version round-trips with its version name and per-file commits")
    func modelScopeRoundTrip() async throws {
        try await FakeHub.withRunning { hub in
            hub.addModelScopeRepo("qwen/tiny", commits: [ModelScopePullTests.commit()])
            let archive = temporaryFile("ms.tar.gz")
            defer { try? FileManager.default.removeItem(at: archive) }
            let original = Locked<VersionShape?>(nil)
            try await withPullService(hub: hub) { harness in
                try await harness.pull("qwen/tiny", source: .modelscope)
                let pulled = try await shape(harness, source: .modelscope, repo: "qwen/tiny")
                original.withLock { $0 = pulled }
                try await export(harness, source: .modelscope, repo: "qwen/tiny", format: .tarGz, to: archive)
            }
            try await withPullService(hub: hub) { harness in
                _ = try await importFile(harness, archive)
                let imported = try await shape(harness, source: .modelscope, repo: "qwen/tiny")
                #expect(imported == original.withLock { $0 })
            }
        }
    }

    @Test("a version that is not ready is not exported; a damaged blob stops the export")
    func exportRefusals() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            try await withPullService(hub: hub) { harness in
                await #expect(throws: ArchiveError.self) {
                    try await harness.archives.exportPlan(source: .huggingface, repo: "acme/tiny", commit: nil)
                }
                try await harness.pull("acme/tiny")
                let blob = harness.repoDirectory("acme/tiny").appending(
                    path: "blobs/\(commit.files.first { $0.path == "model.safetensors" }!.sha256)")
                var bytes = try Data(contentsOf: blob)
                bytes[100] ^= 0xFF
                try bytes.write(to: blob)
                let archive = temporaryFile("damaged.tar")
                defer { try? FileManager.default.removeItem(at: archive) }
                let error = try await #require(throws: ArchiveError.self) {
                    try await export(harness, repo: "acme/tiny", format: .tar, to: archive)
                }
                #expect(error.message.contains("model.safetensors") && error.message.contains("damaged"), "\(error)")
            }
        }
    }
}

/// Builds archives with Python's tarfile and zipfile, as another tool (or an attacker) would.
private let archiveScript = #"""
    import hashlib, io, json, sys, tarfile, zipfile
    out, case = sys.argv[1], sys.argv[2]
    config = b'{"model_type": "llama"}'
    weights = bytes((i * 7) % 251 for i in range(50000))
    def entry(path, data):
        return {"path": path, "size": len(data), "hash": hashlib.sha256(data).hexdigest(), "hash_kind": "sha256"}
    files = [entry("config.json", config), entry("model.bin", weights)]
    extra = []
    if case in ("symlink", "hardlink", "device", "innerlink"):
        files.append(entry("link.bin", weights))
    if case == "missing":
        files.append(entry("tokenizer.json", b"{}"))
    if case == "size":
        files[1]["size"] = len(weights) + 10
    manifest = {"format": "modeld-model-archive", "format_version": 1, "source": "huggingface", "repo": "evil/model",
                "revision": "main", "commit": "ab" * 20, "files": files}
    body = json.dumps(manifest).encode()
    content = weights
    if case == "corrupt":
        content = bytearray(weights); content[1234] ^= 0xFF; content = bytes(content)
    if case == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("modeld-manifest.json", body)
            z.writestr("config.json", config)
            z.writestr("model.bin", weights)
        sys.exit(0)
    with tarfile.open(out, "w:gz") as t:
        def add(name, data, **kw):
            info = tarfile.TarInfo(name); info.size = len(data)
            for k, v in kw.items(): setattr(info, k, v)
            t.addfile(info, io.BytesIO(data))
        add("modeld-manifest.json", body)
        add("config.json", config)
        if case == "absolute":
            add(sys.argv[3], b"pwned")
        if case == "dotdot":
            add("../" + sys.argv[3], b"pwned")
        add("model.bin", content)
        if case == "symlink":
            info = tarfile.TarInfo("link.bin"); info.type = tarfile.SYMTYPE; info.linkname = "../../../../" + sys.argv[3]; t.addfile(info)
        if case == "hardlink":
            info = tarfile.TarInfo("link.bin"); info.type = tarfile.LNKTYPE; info.linkname = "../" + sys.argv[3]; t.addfile(info)
        if case == "innerlink":
            info = tarfile.TarInfo("link.bin"); info.type = tarfile.SYMTYPE; info.linkname = "./model.bin"; t.addfile(info)
        if case == "unlisted":
            add("extra.txt", b"not in the manifest")
        if case == "device":
            info = tarfile.TarInfo("link.bin"); info.type = tarfile.CHRTYPE; info.devmajor = 1; info.devminor = 3; t.addfile(info)
    """#

private func makeArchive(_ file: URL, case name: String, victim: String = "") throws {
    let process = Process()
    process.executableURL = URL(filePath: "/usr/bin/env")
    process.arguments = ["python3", "-c", archiveScript, file.path, name, victim]
    let errors = Pipe()
    process.standardError = errors
    try process.run()
    let text = String(decoding: (try? errors.fileHandleForReading.readToEnd()) ?? Data(), as: UTF8.self)
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw ArchiveError(.storage, "python failed: \(text)") }
}

@Suite("Hostile and corrupt archives are refused with nothing written")
struct HostileArchiveTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var code: ArchiveError.Code
        var says: String
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "absolute", code: .unsafeEntry, says: "absolute path"),
        Case(name: "dotdot", code: .unsafeEntry, says: ".. component"),
        Case(name: "symlink", code: .unsafeEntry, says: "outside the model"),
        Case(name: "hardlink", code: .unsafeEntry, says: "outside the model"),
        Case(name: "device", code: .unsafeEntry, says: "character device"),
        Case(name: "size", code: .manifestMismatch, says: "the manifest says 50010"),
        Case(name: "corrupt", code: .checksumMismatch, says: "model.bin is corrupt"),
        Case(name: "unlisted", code: .manifestMismatch, says: "the archive's manifest does not list it"),
        Case(name: "missing", code: .manifestMismatch, says: "the archive ends without tokenizer.json"),
    ]

    @Test("each kind of hostile archive is refused: nothing registered, no stray file, nothing outside the data directory", arguments: cases)
    func refused(_ hostile: Case) async throws {
        try await FakeHub.withRunning { hub in
            let archive = temporaryFile("\(hostile.name).tar.gz")
            let outside = FileManager.default.temporaryDirectory.appending(path: "modeld-victim-\(UUID().uuidString.prefix(8))")
            defer {
                try? FileManager.default.removeItem(at: archive)
                try? FileManager.default.removeItem(at: outside)
            }
            // The name the hostile entry aims at: absolute for `absolute`, relative to the extraction point otherwise.
            let victim = hostile.name == "absolute" ? outside.path : outside.lastPathComponent
            try await offPool { try makeArchive(archive, case: hostile.name, victim: victim) }
            try await withPullService(hub: hub) { harness in
                let error = try #require(await importError(harness, archive), "\(hostile.name) was accepted")
                #expect(error.code == hostile.code, "\(error)")
                #expect(error.message.contains(hostile.says), "\(error)")
                #expect(!error.message.contains("\n"))
                #expect(try await harness.store.localVersions().isEmpty, "nothing is registered")
                #expect(harness.temporaryFiles().isEmpty, "no staging file is left: \(harness.temporaryFiles())")
                #expect(tree(harness.data.huggingFaceHub).isEmpty, "nothing entered the cache: \(tree(harness.data.huggingFaceHub))")
                #expect(!FileManager.default.fileExists(atPath: outside.path), "nothing was written outside")
                for directory in [harness.data.root, harness.data.tmp, harness.data.huggingFaceHub] {
                    #expect(
                        !FileManager.default.fileExists(atPath: directory.deletingLastPathComponent().appending(path: outside.lastPathComponent).path)
                    )
                }
            }
        }
    }

    @Test("a symlink to an earlier file of the model is taken as that file's content")
    func innerSymlink() async throws {
        try await FakeHub.withRunning { hub in
            let archive = temporaryFile("inner.tar.gz")
            defer { try? FileManager.default.removeItem(at: archive) }
            try await offPool { try makeArchive(archive, case: "innerlink") }
            try await withPullService(hub: hub) { harness in
                let outcome = try await importFile(harness, archive)
                let snapshot = URL(filePath: try #require(outcome.version.version.path))
                #expect(outcome.files == 3)
                #expect(try Data(contentsOf: snapshot.appending(path: "link.bin")) == Data(contentsOf: snapshot.appending(path: "model.bin")))
                #expect(readLink(snapshot.appending(path: "link.bin")) == readLink(snapshot.appending(path: "model.bin")), "one blob for both")
            }
        }
    }

    @Test("a zip written by Python's zipfile imports (streamed, deflated)")
    func pythonZip() async throws {
        try await FakeHub.withRunning { hub in
            let archive = temporaryFile("model.zip")
            defer { try? FileManager.default.removeItem(at: archive) }
            try await offPool { try makeArchive(archive, case: "zip") }
            try await withPullService(hub: hub) { harness in
                let outcome = try await importFile(harness, archive)
                #expect(outcome.version.model.repo == "evil/model" && outcome.version.version.state == .ready)
                let path = try #require(outcome.version.version.path)
                #expect(try String(contentsOf: URL(filePath: path).appending(path: "config.json"), encoding: .utf8) == #"{"model_type": "llama"}"#)
            }
        }
    }

    @Test("not an archive, no manifest, or a truncated archive: a clear error and nothing registered")
    func unreadable() async throws {
        try await FakeHub.withRunning { hub in
            let good = temporaryFile("good.tar.gz")
            let garbage = temporaryFile("garbage.tar")
            let truncated = temporaryFile("truncated.tar.gz")
            defer { for file in [good, garbage, truncated] { try? FileManager.default.removeItem(at: file) } }
            try await offPool { try makeArchive(good, case: "valid") }
            try Data("this is not an archive at all, just text".utf8).write(to: garbage)
            let bytes = try Data(contentsOf: good)
            try bytes.prefix(bytes.count * 2 / 3).write(to: truncated)
            try await withPullService(hub: hub) { harness in
                let notArchive = try #require(await importError(harness, garbage))
                #expect(notArchive.code == .unreadable, "\(notArchive)")
                let cut = try #require(await importError(harness, truncated))
                #expect([.unreadable, .manifestMismatch].contains(cut.code), "\(cut)")
                #expect(try await harness.store.localVersions().isEmpty)
                #expect(harness.temporaryFiles().isEmpty)
                #expect(tree(harness.data.huggingFaceHub).isEmpty)
                _ = try await importFile(harness, good)
                #expect(try await harness.store.localVersions().count == 1)
            }
        }
    }

    @Test("a full disk is diskFull (the daemon's 507), whether found before the import or while writing")
    func diskFull() async throws {
        // /dev/full fails every write with ENOSPC.
        let fd = open("/dev/full", O_WRONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        let full = try #require(throws: ArchiveError.self) {
            try Data(count: 16).withUnsafeBytes { try FileDescriptorStream(fd: fd).write($0) }
        }
        #expect(full.code == .diskFull, "\(full)")
        try await FakeHub.withRunning { hub in
            let archive = temporaryFile("valid.tar.gz")
            defer { try? FileManager.default.removeItem(at: archive) }
            try await offPool { try makeArchive(archive, case: "valid") }
            try await withPullService(hub: hub, configure: { $0.freeSpace = { _ in 1_000_000 } }) { harness in
                let error = try #require(await importError(harness, archive))
                #expect(error.code == .diskFull, "\(error)")
                #expect(error.message.hasPrefix("not enough disk space to import evil/model: needs"), "\(error)")
                #expect(try await harness.store.localVersions().isEmpty)
            }
        }
    }

    @Test("the free space an import needs counts only what it writes: content the cache already holds is not written again")
    func freeSpaceCountsNewBytesOnly() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [ArchiveRoundTripTests.commit()])
            let archive = temporaryFile("tiny.tar")
            let root = temporaryFile("data")
            defer {
                try? FileManager.default.removeItem(at: archive)
                try? FileManager.default.removeItem(at: root)
            }
            try await withPullService(hub: hub, dataRoot: root) { harness in
                try await harness.pull("acme/tiny")
                try await export(harness, repo: "acme/tiny", format: .tar, to: archive)
            }
            // 100 kB above the 64 MiB margin: less than the archive's 3 MB of weights, more than nothing.
            let tight: @Sendable (inout PullConfiguration) -> Void = { $0.freeSpace = { _ in (64 << 20) + 100_000 } }
            try await withPullService(hub: hub, dataRoot: root, configure: tight) { harness in
                let outcome = try await importFile(harness, archive)
                #expect(outcome.version.version.state == .ready)
            }
            try await withPullService(hub: hub, configure: tight) { harness in
                let error = try #require(await importError(harness, archive))
                #expect(error.code == .diskFull && error.message.contains("needs 3.1 MB"), "\(error)")
            }
        }
    }
}

@Suite("Installing a version: undone whole when it fails")
struct InstallRollbackTests {
    @Test("an install of a stored commit that fails in the store leaves the stored version's record exactly as it was")
    func failedInstallRestoresTheRecord() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [tinyCommit()])
            try await withPullService(hub: hub) { harness in
                try await harness.pull("acme/tiny")
                let before = try #require(try await harness.store.versions(source: "huggingface", repo: "acme/tiny").first)
                let config = try #require(try await harness.store.files(versionID: before.version.id!).first { $0.path == "config.json" })
                let file = VerifiedVersion.File(
                    path: try HubPath("config.json", repo: "acme/tiny"), size: config.size, hash: config.hash,
                    kind: HashKind(rawValue: config.hashKind)!, content: .present)
                // The same path twice: the store refuses the file records (one path per version), after the version
                // was begun again under another revision.
                let failing = VerifiedVersion(
                    source: .huggingface, repo: "acme/tiny", revision: "other", commit: before.version.commit, files: [file, file])
                #expect(throws: (any Error).self) { try harness.archives.install(failing, for: "an import") }
                let after = try #require(try await harness.store.versions(source: "huggingface", repo: "acme/tiny").first)
                #expect(after.version == before.version)
                #expect(try await harness.store.files(versionID: before.version.id!).count == 4)
                let report = try await harness.service.verify(source: .huggingface, repo: "acme/tiny", commit: "main")
                #expect(report.isIntact && report.filesChecked == 4)
            }
        }
    }
}

@Suite("Adopting models already on the host")
struct AdoptTests {
    @Test(
        "a Hugging Face cache written by huggingface_hub is registered through hard links, not copies",
        .enabled(if: pythonHasHuggingFaceHub, "needs python3 with huggingface_hub (pip install huggingface_hub)"))
    func adoptHuggingFaceCache() async throws {
        try await FakeHub.withRunning { hub in
            let commit = tinyCommit()
            hub.addRepo("acme/tiny", commits: [commit])
            let cache = FileManager.default.temporaryDirectory.appending(path: "hf-home-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: cache) }
            let script = """
                import sys
                from huggingface_hub import snapshot_download
                print(snapshot_download(sys.argv[1], cache_dir=sys.argv[2], ignore_patterns=["*.bin"]))
                """
            try await offPool {
                let process = Process()
                process.executableURL = URL(filePath: "/usr/bin/env")
                process.arguments = ["python3", "-c", script, "acme/tiny", cache.appending(path: "hub").path]
                var environment = ProcessInfo.processInfo.environment
                environment.merge(["HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"]) { $1 }
                process.environment = environment
                process.standardOutput = FileHandle.nullDevice
                try process.run()
                process.waitUntilExit()
                guard process.terminationStatus == 0 else { throw ArchiveError(.storage, "snapshot_download failed") }
            }
            try await withPullService(hub: hub) { harness in
                // The HF_HOME above the hub cache is accepted too.
                let outcome = try await harness.archives.adoptHuggingFaceCache(at: cache)
                #expect(outcome.skipped.isEmpty, "\(outcome.skipped.map(\.reason))")
                let version = try #require(outcome.adopted.first)
                #expect(outcome.adopted.count == 1)
                #expect(version.version.commit == commit.sha && version.version.requestedRevision == "main")
                #expect(version.version.state == .ready)
                let total = commit.files.filter { $0.path != "pytorch_model.bin" }.reduce(0) { $0 + Int64($1.data.count) }
                #expect(outcome.linkedBytes == total && outcome.copiedBytes == 0)
                // Same layout and records as a pull: the blob names are the hub's etags.
                let records = try await harness.store.files(versionID: version.version.id!)
                let files = Dictionary(uniqueKeysWithValues: commit.files.map { ($0.path, $0) })
                #expect(records.map(\.path) == ["config.json", "model.safetensors", "sub/extra.txt", "tokenizer.json"])
                #expect(records.allSatisfy { $0.hash == files[$0.path]!.etag && $0.hashKind == (files[$0.path]!.lfs ? "sha256" : "git-sha1") })
                // No bytes were copied: our blob is the same inode as huggingface_hub's.
                let weights = files["model.safetensors"]!.sha256
                let ours = harness.repoDirectory("acme/tiny").appending(path: "blobs/\(weights)")
                let theirs = cache.appending(path: "hub/models--acme--tiny/blobs/\(weights)")
                var a = stat()
                var b = stat()
                #expect(stat(ours.path, &a) == 0 && stat(theirs.path, &b) == 0)
                #expect(a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_nlink >= 2)
                let path = try #require(version.version.path)
                #expect(try Data(contentsOf: URL(filePath: path).appending(path: "model.safetensors")) == files["model.safetensors"]!.data)
                #expect(try await harness.service.verify(source: .huggingface, repo: "acme/tiny", commit: "main").isIntact)
                let report = try await offPool {
                    try HuggingFaceHubClientTests().runCheck(cache: harness.hubCache.path, repo: "acme/tiny", revision: "main")
                }
                #expect(report.files.count == 4 && report.warnings.isEmpty)
            }
        }
    }

    @Test("a damaged or incomplete snapshot in a cache is skipped with the reason; the rest is adopted")
    func adoptSkipsDamage() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [tinyCommit()])
            hub.addRepo(
                "acme/other", commits: [FakeCommit(files: [FakeFile("config.json", "{}"), FakeFile("w.safetensors", testBytes(4096, seed: 3))])])
            let source = FileManager.default.temporaryDirectory.appending(path: "modeld-adopt-src-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: source) }
            try await withPullService(hub: hub, dataRoot: source) { harness in
                try await harness.pull("acme/tiny")
                try await harness.pull("acme/other")
                // Damage one blob of acme/other (a file changed in place).
                let version = try #require(try await harness.store.versions(source: "huggingface", repo: "acme/other").first)
                let record = try #require(try await harness.store.files(versionID: version.version.id!).first { $0.path == "w.safetensors" })
                let blob = harness.repoDirectory("acme/other").appending(path: "blobs/\(record.hash)")
                var bytes = try Data(contentsOf: blob)
                bytes[0] ^= 1
                try bytes.write(to: blob)
            }
            try await withPullService(hub: hub) { harness in
                let outcome = try await harness.archives.adoptHuggingFaceCache(at: source.appending(path: "huggingface/hub"))
                #expect(outcome.adopted.map(\.model.repo) == ["acme/tiny"])
                #expect(outcome.skipped.count == 1)
                #expect(outcome.skipped.first?.reason.contains("w.safetensors is damaged or incomplete") == true, "\(outcome.skipped)")
                #expect(try await harness.store.versions(source: "huggingface", repo: "acme/other").isEmpty)
                #expect(!FileManager.default.fileExists(atPath: harness.repoDirectory("acme/other").path), "nothing left of the skipped repository")
            }
        }
    }

    @Test("a plain model directory is registered under a name, hard-linked; a symlink out of it is refused")
    func adoptDirectory() async throws {
        try await FakeHub.withRunning { hub in
            let directory = FileManager.default.temporaryDirectory.appending(path: "modeld-dir-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: directory) }
            try FileManager.default.createDirectory(at: directory.appending(path: "sub"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: directory.appending(path: ".git"), withIntermediateDirectories: true)
            let weights = testBytes(100_000, seed: 5)
            try Data("{}".utf8).write(to: directory.appending(path: "config.json"))
            try weights.write(to: directory.appending(path: "model.safetensors"))
            try Data("nested".utf8).write(to: directory.appending(path: "sub/a.txt"))
            try Data("git internals".utf8).write(to: directory.appending(path: ".git/HEAD"))
            try await withPullService(hub: hub) { harness in
                let outcome = try await harness.archives.adoptDirectory(at: directory, repo: "local/my-model")
                let version = try #require(outcome.adopted.first)
                #expect(version.version.state == .ready && version.version.requestedRevision == "local")
                #expect(version.version.commit.count == 40)
                #expect(outcome.copiedBytes == 0 && outcome.linkedBytes == Int64(weights.count + 2 + 6))
                let records = try await harness.store.files(versionID: version.version.id!)
                #expect(records.map(\.path) == ["config.json", "model.safetensors", "sub/a.txt"], "no .git")
                var a = stat()
                var b = stat()
                let blob = harness.repoDirectory("local/my-model").appending(path: "blobs/\(records[1].hash)")
                #expect(stat(blob.path, &a) == 0 && stat(directory.appending(path: "model.safetensors").path, &b) == 0)
                #expect(a.st_ino == b.st_ino)
                #expect(
                    try Data(contentsOf: harness.repoDirectory("local/my-model").appending(path: "refs/local")) == Data(version.version.commit.utf8))
                #expect(try await harness.service.verify(source: .huggingface, repo: "local/my-model", commit: "local").isIntact)

                symlink("/etc/passwd", directory.appending(path: "escape.txt").path)
                let refused = try await #require(throws: ArchiveError.self) {
                    try await harness.archives.adoptDirectory(at: directory, repo: "local/other")
                }
                #expect(refused.code == .unsafeEntry && refused.message.contains("escape.txt"), "\(refused)")
                #expect(try await harness.store.versions(source: "huggingface", repo: "local/other").isEmpty)
            }
        }
    }
}

@Suite("One repository, one change at a time: pulls, imports, adoptions and removals")
struct RepositoryClaimTests {
    @Test("an import while a pull of the repository runs is refused (busy), and works once the pull is done")
    func refusedWhilePulling() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [tinyCommit()])
            let archive = temporaryFile("tiny.tar")
            defer { try? FileManager.default.removeItem(at: archive) }
            try await withPullService(hub: hub) { harness in
                try await harness.pull("acme/tiny")
                try await export(harness, repo: "acme/tiny", format: .tar, to: archive)
            }
            // The second pull holds its weights for 6 s halfway: the import is tried well within it, even on a crowded machine.
            hub.addFault(.stall(path: "model.safetensors", afterBytes: 1 << 20, seconds: 6))
            try await withPullService(hub: hub, configure: { $0.stallTimeout = .seconds(30) }) { harness in
                let job = harness.service.pull(PullRequest(repo: "acme/tiny"))
                let refused = try #require(await importError(harness, archive))
                #expect(refused.code == .busy && refused.message.contains("acme/tiny is being pulled"), "\(refused)")
                #expect(!job.isFinished, "the pull ended before the import was tried: the test proves nothing")
                #expect(try await harness.store.versions(source: "huggingface", repo: "acme/tiny").allSatisfy { $0.version.state != .ready })
                #expect(harness.temporaryFiles().filter { $0.hasPrefix("import-") }.isEmpty, "the refused import left nothing")
                _ = try await job.result()
                #expect(try await importFile(harness, archive).version.version.state == .ready)
                try await harness.service.remove(source: .huggingface, repo: "acme/tiny", commit: "main")
                #expect(try await harness.store.localVersions().isEmpty)
            }
        }
    }

    @Test("while an import places a version, a removal is refused and a pull of the repository waits for it")
    func claimHoldsOffOthers() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/tiny", commits: [tinyCommit()])
            try await withPullService(hub: hub) { harness in
                try await harness.pull("acme/tiny")
                let before = try await offPool {
                    try harness.service.claiming(source: .huggingface, repo: "acme/tiny", for: "an import") {
                        // The removal is asked for from a task while this thread holds the claim.
                        let tried = DispatchSemaphore(value: 0)
                        Task {
                            do {
                                try await harness.service.remove(source: .huggingface, repo: "acme/tiny", commit: "main")
                                Issue.record("a removal ran during the import")
                            } catch let error as PullError {
                                #expect(error.code == .busy && error.message.contains("busy with an import"), "\(error)")
                            } catch {
                                Issue.record("\(error)")
                            }
                            tried.signal()
                        }
                        tried.wait()
                        // A pull started now waits: nothing reaches the hub while the import holds the repository.
                        let before = hub.requests.count
                        let job = harness.service.pull(PullRequest(repo: "acme/tiny", revision: "main"))
                        Thread.sleep(forTimeInterval: 0.5)
                        #expect(!job.isFinished && hub.requests.count == before, "the pull ran during the import")
                        return before
                    }
                }
                // Released: the waiting pull runs (the commit is already there, so it only resolves it).
                let snapshot = try await harness.pull("acme/tiny", revision: "main")
                #expect(!snapshot.isEmpty && hub.requests.count > before)
                #expect(try await harness.store.localVersions().count == 1)
            }
        }
    }
}
