import FakeHub
import Foundation
import ModeldAPI
import ModeldClient
import Testing

@Suite("modelctl export and import between two daemons")
struct ArchiveCommandTests {
    @Test("pull into daemon A, export, import into daemon B on a fresh data directory: byte-identical, ready, verified")
    func roundTripBetweenDaemons() async throws {
        try await FakeHub.withRunning { hub in
            let weights = Data((0..<400_000).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) })
            let files = [
                FakeFile("config.json", #"{"model_type": "qwen2"}"#), FakeFile("model.safetensors", weights), FakeFile("sub/notes.txt", "hello\n"),
            ]
            hub.addRepo("acme/tiny", commits: [FakeCommit(files: files)])
            let work = FileManager.default.temporaryDirectory.appending(path: "modeld-export-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: work) }
            let archive = work.appending(path: "tiny.tar.zst").path

            let first = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                #expect(try await first.modelctl(["pull", "acme/tiny"]).status == 0)
                let exported = try await first.modelctl(["export", "acme/tiny", "-o", archive])
                #expect(exported.status == 0, "\(exported.stderr)\n\(first.log)")
                #expect(exported.stdout.contains("wrote \(archive)"))
                #expect(!FileManager.default.fileExists(atPath: archive + ".partial"))
                let missing = try await first.modelctl(["export", "acme/none", "-o", work.appending(path: "none.tar").path])
                #expect(missing.status == 1 && missing.stderr.contains("no local version of acme/none"), "\(missing.stderr)")
                #expect(!FileManager.default.fileExists(atPath: work.appending(path: "none.tar").path), "no file for a failed export")
                let badName = try await first.modelctl(["export", "acme/tiny", "-o", work.appending(path: "x.rar").path])
                #expect(badName.status == 64 && badName.stderr.contains(".tar.zst"), "\(badName.stderr)")
            } catch {
                try await first.stop()
                throw error
            }
            try await first.stop()

            // Daemon B cannot reach any hub.
            let second = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": "http://127.0.0.1:9"])
            do {
                let imported = try await second.modelctl(["import", archive])
                #expect(imported.status == 0, "\(imported.stderr)\n\(second.log)")
                #expect(imported.stdout.contains("ready acme/tiny@"), "\(imported.stdout)")
                let listed = try await second.modelctl(["list", "--json"])
                let versions = try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(listed.stdout.utf8))
                let version = try #require(versions.first)
                #expect(versions.count == 1 && version.state == "ready" && version.revision == "main")
                #expect(version.commit == FakeCommit(files: files).sha)
                let snapshot = URL(filePath: try #require(version.path))
                for file in files {
                    #expect(try Data(contentsOf: snapshot.appending(path: file.path)) == file.data, "\(file.path)")
                }
                let verified = try await second.modelctl(["verify", "acme/tiny"])
                #expect(verified.status == 0 && verified.stdout.contains("intact"), "\(verified.stdout)")

                // The same archive through the API with the zip format, streamed back by the daemon itself.
                let zip = work.appending(path: "tiny.zip").path
                #expect(try await second.modelctl(["export", "acme/tiny", "-o", zip]).status == 0)
                #expect(try Data(contentsOf: URL(filePath: zip)).prefix(2) == Data("PK".utf8))
            } catch {
                try await second.stop()
                throw error
            }
            try await second.stop()
        }
    }

    @Test("a corrupted archive fails the import with one line and exit 1; nothing is registered or left in tmp/")
    func corruptedImport() async throws {
        try await FakeHub.withRunning { hub in
            hub.addRepo(
                "acme/tiny",
                commits: [FakeCommit(files: [FakeFile("config.json", "{}"), FakeFile("model.safetensors", Data(repeating: 7, count: 200_000))])])
            let work = FileManager.default.temporaryDirectory.appending(path: "modeld-corrupt-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: work) }
            let archive = work.appending(path: "tiny.tar")
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint])
            do {
                #expect(try await daemon.modelctl(["pull", "acme/tiny"]).status == 0)
                #expect(try await daemon.modelctl(["export", "acme/tiny", "-o", archive.path]).status == 0)
                #expect(try await daemon.modelctl(["rm", "acme/tiny"]).status == 0)
                // Flip a byte in the middle of the weights (an uncompressed tar keeps the file's bytes as they are).
                var bytes = try Data(contentsOf: archive)
                let start = try #require(bytes.firstRange(of: Data(repeating: 7, count: 4096)))
                bytes[start.lowerBound + 100_000] = 8
                try bytes.write(to: archive)
                let failed = try await daemon.modelctl(["import", archive.path])
                #expect(failed.status == 1)
                let message = failed.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
                #expect(message.contains("model.safetensors is corrupt") && !message.contains("\n"), "\(message)")
                let listed = try await daemon.modelctl(["list", "--json"])
                #expect(try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(listed.stdout.utf8)).isEmpty)
                let tmp = daemon.root.appending(path: "tmp")
                #expect(((try? FileManager.default.contentsOfDirectory(atPath: tmp.path)) ?? []).isEmpty)
                #expect(((try? FileManager.default.contentsOfDirectory(atPath: daemon.root.appending(path: "huggingface/hub").path)) ?? []).isEmpty)
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }

    @Test("an archive refused at its first entries still gets its one-line error while modelctl is uploading the rest")
    func earlyRefusalWhileUploading() async throws {
        let daemon = try await DaemonProcess()
        do {
            let archive = daemon.root.deletingLastPathComponent().appending(path: "modeld-early-\(UUID().uuidString.prefix(8)).tar")
            defer { try? FileManager.default.removeItem(at: archive) }
            // A manifest, an entry that climbs out with `..`, then 40 MB the daemon has no use for.
            let script = """
                import io, json, sys, tarfile
                manifest = json.dumps({"format": "modeld-model-archive", "format_version": 1, "source": "huggingface",
                    "repo": "evil/model", "revision": "main", "commit": "cd" * 20,
                    "files": [{"path": "big.bin", "size": 40000000, "hash": "00" * 32, "hash_kind": "sha256"}]}).encode()
                with tarfile.open(sys.argv[1], "w") as t:
                    for name, data in [("modeld-manifest.json", manifest), ("../escape.txt", b"pwned"), ("big.bin", bytes(40000000))]:
                        info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
                """
            let built = try await runProcess(URL(filePath: "/usr/bin/env"), ["python3", "-c", script, archive.path])
            try #require(built.status == 0, "\(built.stderr)")
            let refused = try await daemon.modelctl(["import", archive.path])
            #expect(refused.status == 1)
            let message = refused.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(message == "modelctl: refusing ../escape.txt: it contains a .. component", "\(message)\n\(daemon.log)")
            #expect(!FileManager.default.fileExists(atPath: daemon.root.appending(path: "escape.txt").path))
            #expect(!FileManager.default.fileExists(atPath: daemon.root.deletingLastPathComponent().appending(path: "escape.txt").path))
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: daemon.root.appending(path: "tmp").path)) ?? []).isEmpty)
            let listed = try await daemon.modelctl(["list", "--json"])
            #expect(try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(listed.stdout.utf8)).isEmpty)
            // The daemon is still fine: the next request on a fresh connection works.
            #expect(try await daemon.modelctl(["list"]).status == 0)
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }

    @Test("modelctl import --dir registers a plain directory through the daemon, without copying")
    func importDirectory() async throws {
        let daemon = try await DaemonProcess()
        do {
            let directory = daemon.root.deletingLastPathComponent().appending(path: "modeld-plain-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            try Data("{}".utf8).write(to: directory.appending(path: "config.json"))
            try Data(repeating: 3, count: 50_000).write(to: directory.appending(path: "model.safetensors"))
            let adopted = try await daemon.modelctl(["import", "--dir", directory.path, "--name", "me/plain"])
            #expect(adopted.status == 0, "\(adopted.stderr)")
            #expect(adopted.stdout.contains("ready me/plain@") && adopted.stdout.contains("0 B copied"), "\(adopted.stdout)")
            let listed = try await daemon.modelctl(["list", "--json"])
            let version = try #require(try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(listed.stdout.utf8)).first)
            #expect(version.repo == "me/plain" && version.state == "ready" && version.sizeBytes == 50_002)
            let usage = try await daemon.modelctl(["import", "--dir", directory.path])
            #expect(usage.status == 64 && usage.stderr.contains("--name"), "\(usage.stderr)")
            let missing = try await daemon.modelctl(["import", "--hf-cache", directory.appending(path: "nope").path])
            #expect(missing.status == 1 && missing.stderr.contains("is not a directory"), "\(missing.stderr)")
        } catch {
            try await daemon.stop()
            throw error
        }
        try await daemon.stop()
    }
}
