import Foundation
import Launchers
import ModelStore
import Testing

@Suite("Launch contracts")
struct LaunchContractTests {
    let data = DataDirectory(root: URL(filePath: "/var/lib/modeld", directoryHint: .isDirectory))
    let base = [
        "PATH": "/usr/bin:/bin", "HOME": "/var/lib/modeld", "NOTIFY_SOCKET": "@modeld", "LISTEN_FDS": "2",
        "LISTEN_PID": "1", "LISTEN_FDNAMES": "http:control", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1",
    ]
    let options = RunOptions(
        gpus: "0,1", tensorParallelSize: 2, memoryFraction: 0.85, maxContext: 8192, extraArguments: ["--dtype", "auto"],
        environment: ["VLLM_LOGGING_LEVEL": "DEBUG"])

    func builder(_ command: [EngineKind: [String]]) -> CommandBuilder {
        var engines: [EngineKind: EngineSettings] = [:]
        for (kind, prefix) in command {
            engines[kind] = EngineSettings(command: prefix, startTimeout: .seconds(1), stopGrace: .seconds(1))
        }
        return CommandBuilder(dataDirectory: data, engines: engines, baseEnvironment: base)
    }

    @Test("vLLM: serve <dir> on loopback with every option, offline hub cache, no systemd variables")
    func vllm() throws {
        let spec = LaunchSpec(engine: .vllm, modelPath: "/m/snap", servedName: "qwen", options: options)
        let command = try builder([.vllm: ["/bin/sh"]]).command(for: spec, port: 18123)
        #expect(command.executablePath == "/bin/sh")
        #expect(
            command.arguments == [
                "/bin/sh", "serve", "/m/snap", "--host", "127.0.0.1", "--port", "18123", "--served-model-name", "qwen",
                "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.85", "--max-model-len", "8192", "--dtype", "auto",
            ])
        #expect(
            command.environment == [
                "PATH": "/usr/bin:/bin", "HOME": "/var/lib/modeld", "HF_HUB_CACHE": "/var/lib/modeld/huggingface/hub",
                "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "0,1", "VLLM_LOGGING_LEVEL": "DEBUG",
            ])
    }

    @Test("SGLang: python3 -m sglang.launch_server --model-path with its own option names")
    func sglang() throws {
        let spec = LaunchSpec(engine: .sglang, modelPath: "/m/snap", servedName: "qwen", options: options)
        let command = try builder([.sglang: ["/bin/sh", "-m", "sglang.launch_server"]]).command(for: spec, port: 30001)
        #expect(
            command.arguments == [
                "/bin/sh", "-m", "sglang.launch_server", "--model-path", "/m/snap", "--host", "127.0.0.1", "--port", "30001",
                "--served-model-name", "qwen", "--tp-size", "2", "--mem-fraction-static", "0.85", "--context-length", "8192",
                "--dtype", "auto",
            ])
        #expect(command.environment["HF_HUB_CACHE"] == "/var/lib/modeld/huggingface/hub")
        #expect(command.environment["HF_HUB_OFFLINE"] == "1")
        #expect(command.environment["CUDA_VISIBLE_DEVICES"] == "0,1")
        #expect(command.environment["NOTIFY_SOCKET"] == nil)
    }

    @Test("built-in: modeld engine --model DIR --host 127.0.0.1 --port P --served-model-name N")
    func builtin() throws {
        let spec = LaunchSpec(engine: .builtin, modelPath: "/m/snap", servedName: "tiny")
        let command = try builder([.builtin: ["/bin/sh"]]).command(for: spec, port: 18200)
        #expect(
            command.arguments == ["/bin/sh", "engine", "--model", "/m/snap", "--host", "127.0.0.1", "--port", "18200", "--served-model-name", "tiny"])
        #expect(command.environment == ["PATH": "/usr/bin:/bin", "HOME": "/var/lib/modeld"])
        #expect(EngineSettings.defaults(for: .builtin).command == [currentExecutablePath()])
    }

    @Test("built-in: a quantization on load is --quantize; a model file is the GGUF file of the snapshot")
    func builtinQuantized() throws {
        var spec = LaunchSpec(engine: .builtin, modelPath: "/m/snap", servedName: "tiny", options: RunOptions(quantization: "q8_0"))
        var command = try builder([.builtin: ["/bin/sh"]]).command(for: spec, port: 18200)
        #expect(command.arguments.suffix(2) == ["--quantize", "q8_0"])
        let snapshot = FileManager.default.temporaryDirectory.appending(path: "builtin-gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: snapshot, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: snapshot) }
        try Data("GGUF".utf8).write(to: snapshot.appending(path: "tiny-Q4_0.gguf"))
        spec = LaunchSpec(engine: .builtin, modelPath: snapshot.path, servedName: "tiny", options: RunOptions(modelFile: "tiny-Q4_0.gguf"))
        command = try builder([.builtin: ["/bin/sh"]]).command(for: spec, port: 18200)
        #expect(command.arguments.prefix(3) == ["/bin/sh", "engine", "--model"] && command.arguments[3] == snapshot.path + "/tiny-Q4_0.gguf")
        #expect(!command.arguments.contains("--quantize"))
        spec.options.modelFile = "other.gguf"
        #expect(throws: LaunchError.self) { try builder([.builtin: ["/bin/sh"]]).command(for: spec, port: 18200) }
    }

    @Test("Ollama: ollama serve with OLLAMA_HOST on loopback and OLLAMA_MODELS in the data directory")
    func ollama() throws {
        let spec = LaunchSpec(engine: .ollama, servedName: "ollama")
        let command = try builder([.ollama: ["/bin/sh"]]).command(for: spec, port: 11500)
        #expect(command.arguments == ["/bin/sh", "serve"])
        #expect(
            command.environment == [
                "PATH": "/usr/bin:/bin", "HOME": "/var/lib/modeld", "OLLAMA_HOST": "127.0.0.1:11500",
                "OLLAMA_MODELS": "/var/lib/modeld/ollama", "OLLAMA_KEEP_ALIVE": "-1",
            ])
    }

    @Test("several GPUs: vLLM's tensor, pipeline and data parallel sizes; SGLang's --tp-size, --pp-size, --dp-size")
    func parallelism() throws {
        let options = RunOptions(gpus: "0,1,2,3,4,5,6,7", tensorParallelSize: 2, pipelineParallelSize: 2, dataParallelSize: 2)
        let vllm = try builder([.vllm: ["/bin/sh"]]).command(
            for: LaunchSpec(engine: .vllm, modelPath: "/m/snap", servedName: "big", options: options), port: 18400)
        #expect(Array(vllm.arguments.suffix(6)) == ["--tensor-parallel-size", "2", "--pipeline-parallel-size", "2", "--data-parallel-size", "2"])
        let sglang = try builder([.sglang: ["/bin/sh"]]).command(
            for: LaunchSpec(engine: .sglang, modelPath: "/m/snap", servedName: "big", options: options), port: 18401)
        #expect(Array(sglang.arguments.suffix(6)) == ["--tp-size", "2", "--pp-size", "2", "--dp-size", "2"])
        #expect(vllm.environment["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7" && sglang.environment["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7")
        #expect(GPUPlacement.gpuCount(options) == 8)
        #expect(GPUPlacement.gpuCount(RunOptions()) == 1)
    }

    @Test("vLLM across hosts: the head serves with its node rank 0, a worker is `--headless` without a port (docs/multi-node.md)")
    func multiNode() throws {
        let builder = builder([.vllm: ["/bin/sh"]])
        func spec(rank: Int) -> LaunchSpec {
            LaunchSpec(
                engine: .vllm, modelPath: "/m/snap", servedName: "qwen72",
                options: RunOptions(
                    gpus: "0,1,2,3,4,5,6,7", tensorParallelSize: 8, pipelineParallelSize: 2,
                    multiNode: MultiNode(nodes: 2, rank: rank, masterAddress: "10.0.0.1", masterPort: 29500), extraArguments: ["--enforce-eager"]))
        }
        let head = try builder.command(for: spec(rank: 0), port: 18500)
        #expect(
            head.arguments == [
                "/bin/sh", "serve", "/m/snap", "--host", "127.0.0.1", "--port", "18500", "--served-model-name", "qwen72",
                "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--nnodes", "2", "--node-rank", "0",
                "--master-addr", "10.0.0.1", "--master-port", "29500", "--enforce-eager",
            ])
        #expect(spec(rank: 0).servesHTTP)
        let worker = try builder.command(for: spec(rank: 1), port: 0)
        #expect(
            worker.arguments == [
                "/bin/sh", "serve", "/m/snap", "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--nnodes", "2",
                "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port", "29500", "--headless", "--enforce-eager",
            ])
        #expect(!spec(rank: 1).servesHTTP)
        let environment = [
            "PATH": "/usr/bin:/bin", "HOME": "/var/lib/modeld", "HF_HUB_CACHE": "/var/lib/modeld/huggingface/hub", "HF_HUB_OFFLINE": "1",
            "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
        ]
        #expect(head.environment == environment && worker.environment == environment)
        // Each host places its own share of the GPUs: 8 × 2 over 2 hosts.
        #expect(GPUPlacement.gpuCount(spec(rank: 1).options) == 8)
    }

    @Test(
        "vLLM across hosts: impossible parts are refused before launch, and other engines run on one host",
        arguments: [
            (MultiNode(nodes: 1, rank: 0, masterAddress: "10.0.0.1", masterPort: 29500), "a multi-node run spans 2 hosts or more, not 1"),
            (MultiNode(nodes: 2, rank: 2, masterAddress: "10.0.0.1", masterPort: 29500), "node rank 2 is not one of the run's 2 hosts (0 to 1)"),
            (
                MultiNode(nodes: 2, rank: 1, masterAddress: "--headless", masterPort: 29500),
                "master address \"--headless\" is not a host name or IP address"
            ),
            (
                MultiNode(nodes: 2, rank: 1, masterAddress: "head node", masterPort: 29500),
                "master address \"head node\" is not a host name or IP address"
            ),
            (MultiNode(nodes: 2, rank: 1, masterAddress: "head.cluster", masterPort: 70000), "master port 70000 is not a port (1 to 65535)"),
        ])
    func multiNodeRefused(node: MultiNode, message: String) throws {
        let spec = LaunchSpec(engine: .vllm, modelPath: "/m/snap", servedName: "qwen72", options: RunOptions(multiNode: node))
        let refused = try #require(throws: LaunchError.self) { try builder([.vllm: ["/bin/sh"]]).command(for: spec, port: 18500) }
        #expect(refused.code == .invalidSpec && refused.message == message)
        let sglang = LaunchSpec(
            engine: .sglang, modelPath: "/m/snap", servedName: "qwen72",
            options: RunOptions(multiNode: MultiNode(nodes: 2, rank: 0, masterAddress: "10.0.0.1", masterPort: 29500)))
        let oneHost = try #require(throws: LaunchError.self) { try builder([.sglang: ["/bin/sh"]]).command(for: sglang, port: 18500) }
        #expect(oneHost.code == .invalidSpec)
        #expect(oneHost.message == "a run across several hosts is vLLM's; SGLang runs on one host (docs/multi-node.md)")
    }

    @Test("llama.cpp: llama-server -m <the snapshot's GGUF> on loopback, --alias, --metrics and its own option names")
    func llamacpp() throws {
        let snapshot = try TemporarySnapshot(["model-q8_0.gguf", "README.md", "mmproj-f16.gguf"])
        defer { snapshot.remove() }
        let options = RunOptions(
            gpus: "1", maxContext: 4096, parallel: 4, threads: 2, gpuLayers: 99, extraArguments: ["--jinja"],
            environment: ["LLAMA_ARG_BATCH": "512"])
        let spec = LaunchSpec(engine: .llamacpp, modelPath: snapshot.path, servedName: "qwen", options: options)
        let command = try builder([.llamacpp: ["/bin/sh"]]).command(for: spec, port: 18300)
        #expect(
            command.arguments == [
                "/bin/sh", "-m", "\(snapshot.path)/model-q8_0.gguf", "--host", "127.0.0.1", "--port", "18300", "--alias", "qwen",
                "--metrics", "--ctx-size", "4096", "--parallel", "4", "--threads", "2", "--n-gpu-layers", "99", "--jinja",
            ])
        #expect(
            command.environment == [
                "PATH": "/usr/bin:/bin", "HOME": "/var/lib/modeld", "CUDA_VISIBLE_DEVICES": "1", "LLAMA_ARG_BATCH": "512",
            ])
        #expect(EngineSettings.defaults(for: .llamacpp).command == ["llama-server"])
    }

    @Test("llama.cpp: a split model loads from its first part; several models need --model-file; none is a clear error")
    func llamacppModelFile() throws {
        let split = try TemporarySnapshot(["q4/m-00002-of-00002.gguf", "q4/m-00001-of-00002.gguf"])
        defer { split.remove() }
        let arguments = try LlamaCppContract().arguments(
            for: LaunchSpec(engine: .llamacpp, modelPath: split.path, servedName: "m"), port: 1, dataDirectory: data
        ).arguments
        #expect(arguments.prefix(2) == ["-m", "\(split.path)/q4/m-00001-of-00002.gguf"])

        let several = try TemporarySnapshot(["a-Q4_K_M.gguf", "a-Q8_0.gguf"])
        defer { several.remove() }
        let ambiguous = try #require(throws: LaunchError.self) {
            try LlamaCppContract().arguments(
                for: LaunchSpec(engine: .llamacpp, modelPath: several.path, servedName: "a"), port: 1, dataDirectory: data)
        }
        #expect(ambiguous.code == .invalidSpec)
        #expect(ambiguous.message.contains("a-Q4_K_M.gguf, a-Q8_0.gguf") && ambiguous.message.contains("--model-file"))
        let chosen = LaunchSpec(engine: .llamacpp, modelPath: several.path, servedName: "a", options: RunOptions(modelFile: "a-Q8_0.gguf"))
        #expect(try LlamaCppContract().arguments(for: chosen, port: 1, dataDirectory: data).arguments[1] == "\(several.path)/a-Q8_0.gguf")
        for bad in ["../a-Q8_0.gguf", "/etc/passwd", "a-Q8_0.bin", "missing.gguf"] {
            let escape = LaunchSpec(engine: .llamacpp, modelPath: several.path, servedName: "a", options: RunOptions(modelFile: bad))
            #expect(throws: LaunchError.self) { try LlamaCppContract().arguments(for: escape, port: 1, dataDirectory: data) }
        }

        let safetensors = try TemporarySnapshot(["model.safetensors", "config.json"])
        defer { safetensors.remove() }
        let none = try #require(throws: LaunchError.self) {
            try LlamaCppContract().arguments(
                for: LaunchSpec(engine: .llamacpp, modelPath: safetensors.path, servedName: "a"), port: 1, dataDirectory: data)
        }
        #expect(none.message.contains("has none: pull a GGUF repository"))
    }

    @Test("defaults: vllm on PATH, SGLang through python3, 600 s vLLM start time-out, short grace for Ollama and built-in")
    func defaults() {
        #expect(EngineSettings.defaults(for: .vllm).command == ["vllm"])
        #expect(EngineSettings.defaults(for: .vllm).startTimeout == .seconds(600))
        #expect(EngineSettings.defaults(for: .sglang).command == ["python3", "-m", "sglang.launch_server"])
        #expect(EngineSettings.defaults(for: .ollama).command == ["ollama"])
        #expect(EngineSettings.defaults(for: .ollama).stopGrace == .seconds(10))
        #expect(EngineSettings.defaults(for: .builtin).stopGrace == .seconds(10))
        let vllmGrace = EngineSettings.defaults(for: .vllm).stopGrace
        #expect(vllmGrace >= .seconds(60) && vllmGrace <= .seconds(120))
    }

    @Test("a missing engine says how to install it")
    func missingEngine() throws {
        let spec = LaunchSpec(engine: .vllm, modelPath: "/m/snap", servedName: "qwen")
        let error = try #require(throws: LaunchError.self) { try builder([:]).command(for: spec, port: 1) }
        #expect(error.code == .engineNotFound)
        #expect(error.description == "vllm not found on PATH: install it with `pip install vllm` or set the vLLM executable in the configuration")
        let absolute = try #require(throws: LaunchError.self) {
            try builder([.sglang: ["/nonexistent/python3", "-m", "sglang.launch_server"]]).command(
                for: LaunchSpec(engine: .sglang, modelPath: "/m", servedName: "q"), port: 1)
        }
        #expect(absolute.description.contains("/nonexistent/python3 does not exist"))
        #expect(absolute.description.contains("pip install"))
    }

    @Test("an engine without a snapshot directory is refused")
    func noModelPath() throws {
        let error = try #require(throws: LaunchError.self) {
            try builder([.vllm: ["/bin/sh"]]).command(for: LaunchSpec(engine: .vllm, servedName: "q"), port: 1)
        }
        #expect(error.code == .invalidSpec)
    }

    @Test("the launch spec survives the store's JSON")
    func specRoundTrip() throws {
        let spec = LaunchSpec(engine: .ollama, servedName: "q", ollama: .gguf(path: "/x.gguf", name: "q:latest", sha256: nil), options: options)
        let decoded = try JSONDecoder().decode(LaunchSpec.self, from: JSONEncoder().encode(spec))
        #expect(decoded == spec)
    }
}

@Suite("Supervisor parts")
struct SupervisorPartsTests {
    @Test("backoff doubles from the base up to the cap")
    func backoff() {
        let policy = RestartPolicy()
        #expect((1...8).map { policy.delay(attempt: $0) } == [1, 2, 4, 8, 16, 32, 60, 60].map { Duration.seconds($0) })
        #expect(policy.burstLimit == 5)
        #expect(policy.burstWindow == .seconds(600))
    }

    @Test("/proc/<pid>/stat: fields counted after the command name, which may hold spaces and parentheses")
    func procStat() throws {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615"
        let stat = try #require(ProcStat(parsing: line))
        #expect(stat.pid == 4242)
        #expect(stat.state == "S")
        #expect(stat.parent == 1)
        #expect(stat.processGroup == 4242)
        #expect(stat.startTime == 987654)
        let me = try #require(ProcStat(pid: getpid()))
        #expect(me.isRunning)
        #expect(me.processGroup == getpgrp())
    }

    @Test("port allocation skips a busy port and taken ones")
    func ports() throws {
        let range = portBlock(size: 5)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(range.lowerBound).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(listener, 1) == 0)
        #expect(!PortAllocator.isFree(range.lowerBound))
        let allocator = PortAllocator(range: range)
        #expect(try allocator.allocate(excluding: []) == range.lowerBound + 1)
        #expect(try allocator.allocate(excluding: [range.lowerBound + 1]) == range.lowerBound + 2)
        let full = try #require(throws: LaunchError.self) {
            try PortAllocator(range: range.lowerBound...range.lowerBound).allocate(excluding: [])
        }
        #expect(full.code == .noFreePort)
    }
}

/// A snapshot directory holding empty files at the given relative paths.
struct TemporarySnapshot {
    let path: String

    init(_ files: [String]) throws {
        path = FileManager.default.temporaryDirectory.appending(path: "snapshot-\(UUID().uuidString)", directoryHint: .notDirectory)
            .path(percentEncoded: false)
        for file in files {
            let url = URL(filePath: "\(path)/\(file)")
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data().write(to: url)
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
