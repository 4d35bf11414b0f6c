import FakeHub
import Foundation
import ModeldAPI
import Testing

/// `modelctl start --quantization` end to end (docs/quantization.md): a catalog model with a GGUF repository runs
/// that repository's file of the quantization, pulled for it, in the built-in engine; one without runs its
/// safetensors quantized on load; `modelctl list` shows each version's format and quantization.
@Suite("quantization: catalog GGUF files and quantization on load")
struct QuantizationTests {
    static let catalog = """
        {"models": [
          {"id": "tiny", "name": "Tiny", "description": "d", "official_url": "https://example.com",
           "sizes": [{"size": "1b", "hf_repo": "acme/qwen2-tiny", "gguf_repo": "acme/qwen2-tiny-GGUF"}],
           "quantizations": ["bf16", "q8_0", "q4_0", "q4_k_m"], "engines": ["builtin", "llamacpp", "vllm"], "formats": ["safetensors", "gguf"],
           "default_engine": "builtin"},
          {"id": "plain", "name": "Plain", "description": "d", "official_url": "https://example.com",
           "sizes": [{"size": "1b", "hf_repo": "acme/qwen2-tiny"}],
           "quantizations": ["f32", "q8_0", "q4_k_m"], "engines": ["builtin", "vllm"], "formats": ["safetensors"], "default_engine": "builtin"}
        ]}
        """

    /// The tiny Qwen2 fixture as a GGUF file of `type`, written by the `gguf` package (scripts/make-tiny-gguf.py).
    static func gguf(_ type: String) async throws -> Data {
        let out = FileManager.default.temporaryDirectory.appending(path: "tiny-\(UUID().uuidString.prefix(8))-\(type).gguf")
        defer { try? FileManager.default.removeItem(at: out) }
        let script = TinyQwen2.directory.appending(path: "../../../../../scripts/make-tiny-gguf.py").standardized
        let made = try await runProcess(URL(filePath: "/usr/bin/env"), ["python3", script.path, TinyQwen2.directory.path, out.path, type])
        guard made.status == 0 else { throw FakeHubError("make-tiny-gguf.py failed: \(made.stderr)") }
        return try Data(contentsOf: out)
    }

    struct FakeHubError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @Test("start --quantization pulls and runs the GGUF file, quantizes on load without one, and refuses what is not offered")
    func endToEnd() async throws {
        let q8 = try await Self.gguf("Q8_0"), q4 = try await Self.gguf("Q4_0")
        let files = try TinyQwen2.hubFiles()
        try await FakeHub.withRunning { hub in
            hub.addRepo("acme/qwen2-tiny", commits: [FakeCommit(files: files)])
            hub.addRepo(
                "acme/qwen2-tiny-GGUF",
                commits: [
                    FakeCommit(files: [
                        FakeFile("README.md", "tiny GGUF"), FakeFile("qwen2-tiny-q8_0.gguf", q8, lfs: true),
                        FakeFile("Qwen2-Tiny-Q4_0.gguf", q4, lfs: true),
                    ])
                ])
            let catalog = FileManager.default.temporaryDirectory.appending(path: "modeld-quant-\(UUID().uuidString.prefix(8)).json")
            try Data(Self.catalog.utf8).write(to: catalog)
            defer { try? FileManager.default.removeItem(at: catalog) }
            let daemon = try await DaemonProcess(extraEnvironment: ["HF_ENDPOINT": hub.endpoint, "MODELD_CATALOG": catalog.path])
            do {
                try await Self.ggufRuns(daemon, q8: q8, q4: q4)
                try await Self.onLoadRuns(daemon)
            } catch {
                try await daemon.stop()
                throw error
            }
            try await daemon.stop()
        }
    }

    static func start(_ daemon: DaemonProcess, _ arguments: [String]) async throws -> RunSummary {
        let started = try await daemon.modelctl(["start"] + arguments + ["--wait", "--json"])
        #expect(started.status == 0, "\(started.stderr)\nmodeld log:\n\(daemon.log)")
        let run = try WireJSON.decoder().decode(RunSummary.self, from: Data(started.stdout.utf8))
        #expect(run.state == "ready", "\(run)")
        return run
    }

    static func versions(_ daemon: DaemonProcess) async throws -> [LocalVersionInfo] {
        let listed = try await daemon.modelctl(["list", "--json"])
        return try WireJSON.decoder().decode([LocalVersionInfo].self, from: Data(listed.stdout.utf8))
    }

    /// Asks a run for two greedy tokens: the engine really loaded its weights.
    static func generates(_ daemon: DaemonProcess, _ run: String) async throws {
        let reply = try await LLMAPITests.post(
            daemon, "/api/v1/llm/generate", #"{"model": "\#(run)", "prompt": "Hello world", "max_tokens": 2, "ignore_eos": true, "temperature": 0}"#)
        #expect(reply.status == 200 && LLMAPITests.usage(reply.data)["completion_tokens"] == 2, "\(reply.body)")
    }

    static func ggufRuns(_ daemon: DaemonProcess, q8: Data, q4: Data) async throws {
        // Nothing pulled: the start pulls the one file of the quantization from the GGUF repository.
        _ = try await start(daemon, ["tiny:1b", "--engine", "builtin", "--quantization", "q8_0", "--name", "t8"])
        try await generates(daemon, "t8")
        var gguf = try #require(try await versions(daemon).first { $0.repo == "acme/qwen2-tiny-GGUF" })
        #expect(gguf.format == "gguf" && gguf.quantization == "q8_0" && gguf.sizeBytes == Int64(q8.count), "\(gguf)")
        let snapshot = try #require(gguf.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: snapshot).sorted() == ["qwen2-tiny-q8_0.gguf"])
        #expect(try await versions(daemon).allSatisfy { $0.repo != "acme/qwen2-tiny" }, "the safetensors were pulled too")

        // Another quantization, named in capitals as the file is: the second file joins the same version.
        _ = try await start(daemon, ["tiny:1b", "--quantization", "Q4_0", "--name", "t4"])
        try await generates(daemon, "t4")
        gguf = try #require(try await versions(daemon).first { $0.repo == "acme/qwen2-tiny-GGUF" })
        #expect(gguf.quantization == "q4_0,q8_0" && gguf.sizeBytes == Int64(q8.count + q4.count), "\(gguf)")
        let logs = try await daemon.modelctl(["logs", "t4"])
        #expect(logs.stdout.contains("Qwen2-Tiny-Q4_0"), "\(logs.stdout)")

        // Offered by the catalog but not in the repository; not offered; not an engine that chooses weights.
        let missing = try await daemon.modelctl(["start", "tiny:1b", "--quantization", "q4_k_m"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("acme/qwen2-tiny-GGUF has no GGUF file of quantization q4_k_m (it has q4_0, q8_0)"), "\(missing.stderr)")
        let unoffered = try await daemon.modelctl(["start", "tiny:1b", "--quantization", "q5_k_s"])
        #expect(unoffered.status != 0)
        #expect(
            unoffered.stderr.contains("tiny:1b is not offered in quantization \"q5_k_s\"; the catalog offers bf16, q8_0, q4_0, q4_k_m"),
            "\(unoffered.stderr)")
        let vllm = try await daemon.modelctl(["start", "tiny:1b", "--engine", "vllm", "--quantization", "q8_0"])
        #expect(vllm.status != 0 && vllm.stderr.contains("quantization chooses the weights of the builtin and llamacpp engines"), "\(vllm.stderr)")
    }

    static func onLoadRuns(_ daemon: DaemonProcess) async throws {
        let pulled = try await daemon.modelctl(["pull", "plain:1b"])
        #expect(pulled.status == 0, "\(pulled.stderr)")
        _ = try await start(daemon, ["plain:1b", "--quantization", "q8_0", "--name", "p8"])
        try await generates(daemon, "p8")
        let logs = try await daemon.modelctl(["logs", "p8"])
        #expect(logs.stdout.contains("quantization=q8_0") || logs.stdout.contains("quantization: q8_0"), "\(logs.stdout)")
        let noGGUF = try await daemon.modelctl(["start", "plain:1b", "--quantization", "q4_k_m"])
        #expect(noGGUF.status != 0)
        #expect(
            noGGUF.stderr.contains("q4_k_m needs a GGUF file and plain:1b has no GGUF repository (gguf_repo) in the catalog"), "\(noGGUF.stderr)")

        let safetensors = try #require(try await versions(daemon).first { $0.repo == "acme/qwen2-tiny" })
        #expect(safetensors.format == "safetensors" && safetensors.quantization == "f32", "\(safetensors)")
        let table = try await daemon.modelctl(["list"])
        let row = try #require(table.stdout.split(separator: "\n").first { $0.hasPrefix("acme/qwen2-tiny ") })
        #expect(table.stdout.hasPrefix("REPO") && table.stdout.contains("FORMAT") && table.stdout.contains("QUANTIZATION"))
        #expect(row.contains(" safetensors ") && row.contains(" f32 "), "\(table.stdout)")
    }
}
