import Foundation
import ModelStore
import ModeldAPI
import Testing

@testable import Launchers

@Suite("GPU placement")
struct GPUPlacementTests {
    static let a100 = "NVIDIA A100-SXM4-80GB"

    /// An `nvidia-smi` on PATH that answers the inventory query as the real one does (one CSV line per GPU: index,
    /// name, memory total and free in MiB, utilisation in percent) and refuses any other.
    static func fakeNvidiaSMI(in sandbox: Sandbox, lines: [String]) throws -> String {
        let bin = sandbox.path("bin")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        let script = """
            #!/bin/sh
            [ "$*" = "\(GPUInventory.arguments.joined(separator: " "))" ] || { echo "unexpected arguments: $*" >&2; exit 2; }
            cat <<'CSV'
            \(lines.joined(separator: "\n"))
            CSV

            """
        try script.write(toFile: "\(bin)/nvidia-smi", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: "\(bin)/nvidia-smi")
        return bin
    }

    /// A model of `weightsGiB` (a sparse file) with 24 layers, 2 KV heads of 64 and a 32768-token context:
    /// its KV cache at full context is 2 × 24 × 2 × 64 × 32768 × 2 bytes = 0.375 GiB.
    static func writeModel(in directory: String, weightsGiB: Int64) throws {
        let config =
            #"{"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "head_dim": 64, "hidden_size": 896, "max_position_embeddings": 32768}"#
        try config.write(toFile: "\(directory)/config.json", atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: "\(directory)/model.safetensors", contents: nil)
        let handle = try FileHandle(forWritingTo: URL(filePath: "\(directory)/model.safetensors"))
        try handle.truncate(atOffset: UInt64(weightsGiB << 30))
        try handle.close()
    }

    @Test("nvidia-smi's CSV: fields trimmed, [N/A] utilisation as none, anything else refused with the line")
    func parse() throws {
        let gpus = try GPUInventory.parse("0, \(Self.a100), 81920, 81037, 3\n1, Tesla T4, 15360, 14000, [N/A]\n")
        #expect(
            gpus == [
                GPU(index: 0, name: Self.a100, memoryTotalMiB: 81920, memoryFreeMiB: 81037, utilizationPercent: 3),
                GPU(index: 1, name: "Tesla T4", memoryTotalMiB: 15360, memoryFreeMiB: 14000, utilizationPercent: nil),
            ])
        #expect(try GPUInventory.parse("") == [])
        let error = try #require(throws: GPUInventoryError.self) { try GPUInventory.parse("NVIDIA-SMI has failed because it couldn't communicate") }
        #expect(error.description.contains("NVIDIA-SMI has failed"))
    }

    @Test("the need: weight files plus the KV cache at the run's context, or the model's own")
    func estimate() throws {
        let sandbox = try Sandbox()
        try Self.writeModel(in: sandbox.modelDirectory, weightsGiB: 3)
        let full = try MemoryNeed.estimate(LaunchSpec(engine: .vllm, modelPath: sandbox.modelDirectory, servedName: "m"))
        #expect(full == MemoryNeed(weightsBytes: 3 << 30, kvCacheBytes: 2 * 24 * 2 * 64 * 32768 * 2, context: 32768))
        #expect(full.description == "3.4 GiB (weights 3.0 GiB + KV cache 0.4 GiB at 32768 tokens)")
        let short = try MemoryNeed.estimate(
            LaunchSpec(engine: .vllm, modelPath: sandbox.modelDirectory, servedName: "m", options: RunOptions(maxContext: 4096)))
        #expect(short.kvCacheBytes == full.kvCacheBytes / 8 && short.context == 4096)
    }

    @Test("the most free GPUs that no run holds; tensor parallel takes an equal share on each; refusal gives the numbers")
    func choose() throws {
        let gpus = [
            GPU(index: 0, name: Self.a100, memoryTotalMiB: 81920, memoryFreeMiB: 40000, utilizationPercent: 0),
            GPU(index: 1, name: Self.a100, memoryTotalMiB: 81920, memoryFreeMiB: 81000, utilizationPercent: 0),
            GPU(index: 2, name: Self.a100, memoryTotalMiB: 81920, memoryFreeMiB: 60000, utilizationPercent: 0),
        ]
        let need = MemoryNeed(weightsBytes: 30 << 30, kvCacheBytes: 2 << 30, context: 8192)
        #expect(try GPUPlacement.choose(need: need, count: 1, gpus: gpus, held: [:], run: "m") == [1])
        #expect(try GPUPlacement.choose(need: need, count: 1, gpus: gpus, held: [1: "a"], run: "m") == [2])
        #expect(try GPUPlacement.choose(need: need, count: 2, gpus: gpus, held: [:], run: "m") == [1, 2])
        let big = MemoryNeed(weightsBytes: 90 << 30, kvCacheBytes: 10 << 30, context: 131072)
        #expect(try GPUPlacement.choose(need: big, count: 2, gpus: gpus, held: [:], run: "m") == [1, 2])
        let bigger = MemoryNeed(weightsBytes: 140 << 30, kvCacheBytes: 10 << 30, context: 131072)
        let split = try #require(throws: LaunchError.self) { try GPUPlacement.choose(need: bigger, count: 2, gpus: gpus, held: [:], run: "m") }
        #expect(
            split.message.hasPrefix(
                "m needs about 150.0 GiB (weights 140.0 GiB + KV cache 10.0 GiB at 131072 tokens) across 2 GPUs (75.0 GiB on each)"))
        let refused = try #require(throws: LaunchError.self) {
            try GPUPlacement.choose(
                need: MemoryNeed(weightsBytes: 38 << 30, kvCacheBytes: 2 << 30, context: 8192), count: 1, gpus: gpus, held: [1: "a", 2: "b"], run: "m"
            )
        }
        #expect(refused.code == .noGPU && refused.apiError.status == 409)
        #expect(
            refused.message == "m needs about 40.0 GiB (weights 38.0 GiB + KV cache 2.0 GiB at 8192 tokens), and no GPU placement fits: "
                + "GPU 0 (\(Self.a100)) 39.1 GiB free of 80.0 GiB; GPU 1 held by run a; GPU 2 held by run b. "
                + "Free a GPU, lower max_context, or name the GPUs with gpus")
        #expect(GPUPlacement.indices("0, 2,GPU-5f2c") == [0, 2])
    }

    @Test("starts without gpus are placed by a fake nvidia-smi's numbers, runs hold their GPUs, a start that fits nowhere is refused")
    func supervisorPlaces() async throws {
        let sandbox = try Sandbox()
        try Self.writeModel(in: sandbox.modelDirectory, weightsGiB: 30)
        let bin = try Self.fakeNvidiaSMI(in: sandbox, lines: ["0, \(Self.a100), 81920, 40000, 35", "1, \(Self.a100), 81920, 81000, 0"])
        let record = sandbox.path("record.json")
        let supervisor = try await sandbox.supervisor(sandbox.configuration(environment: ["PATH": "\(bin):/usr/bin:/bin"]))
        let first = try await supervisor.start(sandbox.vllmRequest(name: "first", environment: ["FAKE_ENGINE_RECORD": record]))
        #expect(first.gpus == "1")
        #expect(try await supervisor.waitUntilSettled("first", timeout: .seconds(30)).state == .ready)
        #expect(try FakeRecord(path: record).env["CUDA_VISIBLE_DEVICES"] == "1")

        let second = try await supervisor.start(sandbox.vllmRequest(name: "second"))
        #expect(second.gpus == "0")
        let refused = try await #require(throws: LaunchError.self) { try await supervisor.start(sandbox.vllmRequest(name: "third")) }
        #expect(refused.code == .noGPU)
        #expect(refused.message.contains("third needs about 30.4 GiB (weights 30.0 GiB + KV cache 0.4 GiB at 32768 tokens)"))
        #expect(refused.message.contains("GPU 0 held by run second; GPU 1 held by run first"))
        #expect(await supervisor.list().map(\.name) == ["first", "second"])

        // Asked for by index, a GPU is shared; stopped, a run lets its GPU go.
        #expect(try await supervisor.start(sandbox.vllmRequest(name: "shared", options: RunOptions(gpus: "1"))).gpus == "1")
        _ = try await supervisor.stop("first")
        _ = try await supervisor.stop("shared")
        #expect(try await supervisor.start(sandbox.vllmRequest(name: "third")).gpus == "1")
        for name in ["second", "third"] { _ = try await supervisor.stop(name) }
    }

    @Test("a vLLM run with tensor × pipeline parallelism is placed on that many GPUs and the fake engine gets them and the sizes")
    func parallelRunPlaced() async throws {
        let sandbox = try Sandbox()
        try Self.writeModel(in: sandbox.modelDirectory, weightsGiB: 100)
        let lines = (0..<6).map { "\($0), \(Self.a100), 81920, \(70000 + $0 * 1000), 0" }
        let bin = try Self.fakeNvidiaSMI(in: sandbox, lines: lines)
        let record = sandbox.path("record.json")
        let supervisor = try await sandbox.supervisor(sandbox.configuration(environment: ["PATH": "\(bin):/usr/bin:/bin"]))
        let options = RunOptions(tensorParallelSize: 2, pipelineParallelSize: 2)
        let run = try await supervisor.start(sandbox.vllmRequest(name: "big", environment: ["FAKE_ENGINE_RECORD": record], options: options))
        #expect(run.gpus == "2,3,4,5")
        #expect(try await supervisor.waitUntilSettled("big", timeout: .seconds(30)).state == .ready)
        let fake = try FakeRecord(path: record)
        #expect(fake.env["CUDA_VISIBLE_DEVICES"] == "2,3,4,5")
        #expect(Array(fake.argv.suffix(4)) == ["--tensor-parallel-size", "2", "--pipeline-parallel-size", "2"])
        // Two GPUs are left: a second such run does not fit.
        let refused = try await #require(throws: LaunchError.self) {
            try await supervisor.start(sandbox.vllmRequest(name: "again", options: options))
        }
        #expect(refused.message.contains("across 4 GPUs (25.1 GiB on each)"))
        _ = try await supervisor.stop("big")
    }

    @Test("a run across 2 hosts places its host's share: tensor × pipeline / hosts GPUs, each with its part of the weights")
    func multiNodeRunPlaced() async throws {
        let sandbox = try Sandbox()
        try Self.writeModel(in: sandbox.modelDirectory, weightsGiB: 100)
        let lines = (0..<6).map { "\($0), \(Self.a100), 81920, \(70000 + $0 * 1000), 0" }
        let bin = try Self.fakeNvidiaSMI(in: sandbox, lines: lines)
        let supervisor = try await sandbox.supervisor(sandbox.configuration(environment: ["PATH": "\(bin):/usr/bin:/bin"]))
        let node = MultiNode(nodes: 2, rank: 0, masterAddress: "10.0.0.1", masterPort: 29500)
        let head = try await supervisor.start(
            sandbox.vllmRequest(name: "head", options: RunOptions(tensorParallelSize: 2, pipelineParallelSize: 2, multiNode: node)))
        #expect(head.gpus == "4,5")
        // On one host the same sizes take 4 GPUs.
        let alone = try await supervisor.start(
            sandbox.vllmRequest(name: "alone", options: RunOptions(tensorParallelSize: 2, pipelineParallelSize: 2)))
        #expect(alone.gpus == "0,1,2,3")
        // A host's share of a model too large for 2 of its GPUs is refused with the per-host numbers.
        try Self.writeModel(in: sandbox.modelDirectory, weightsGiB: 300)
        let refused = try await #require(throws: LaunchError.self) {
            try await supervisor.start(
                sandbox.vllmRequest(name: "huge", options: RunOptions(tensorParallelSize: 2, pipelineParallelSize: 2, multiNode: node)))
        }
        #expect(refused.message.contains("across 2 GPUs (75.1 GiB on each)"))
        for name in ["head", "alone"] { _ = try await supervisor.stop(name) }
    }
}
