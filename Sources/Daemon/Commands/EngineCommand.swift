import ArgumentParser
import BuiltinEngine
import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import ModelText
import ModeldAPI
import ServiceLifecycle
import UnixSignals

/// `modeld engine`: the built-in engine as a standalone OpenAI-compatible server, and its benchmark.
struct EngineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "engine",
        abstract: "Run the built-in CPU engine (an OpenAI-compatible server over a Hugging Face model directory or a GGUF file).",
        subcommands: [EngineServe.self, EngineBenchCommand.self],
        defaultSubcommand: EngineServe.self)
}

/// `modeld engine --model DIR|FILE.gguf [--host 127.0.0.1] [--port P] [--served-model-name N] [--quantize q8_0|q4_0]`.
struct EngineServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Serve a model (the default).")

    @Option(name: .long, help: "Hugging Face model directory (config.json, safetensors, tokenizer.json) or a GGUF file.")
    var model: String

    @Option(name: .long, help: "Address to bind (default 127.0.0.1).")
    var host = "127.0.0.1"

    @Option(name: .long, help: "Port (default 8000).")
    var port = 8000

    @Option(name: .long, help: "The model name clients send (default: the directory name).")
    var servedModelName: String?

    @Option(name: .long, help: "Sequences decoded together at most (continuous batching).")
    var maxBatch = 16

    @Option(name: .long, help: "Quantize a safetensors model's weights on load: q8_0 or q4_0 (GGUF's block formats).")
    var quantize: String?

    @Option(name: .long, help: "How long a connection with no request in progress stays open (default 60s).")
    var idleTimeout = "60s"

    @Option(name: .long, help: "How long a request's line and headers may take to arrive (default 30s).")
    var headerTimeout = "30s"

    @Option(name: .long, help: "The longest pause while a request body arrives (default 60s).")
    var bodyTimeout = "60s"

    /// The largest request body (the routes read at most this much).
    static let maxBodySize = 32 << 20
    /// The most connections open at once; more wait to be accepted.
    static let maxConnections = 4096

    func validate() throws {
        if let quantize, GGMLType(onLoadName: quantize) == nil {
            let names = GGMLType.onLoad.map { $0.description.lowercased() }.joined(separator: " or ")
            throw ValidationError("--quantize: \"\(quantize)\" is not a quantization the engine applies on load (use \(names))")
        }
        for (name, text) in [("idle-timeout", idleTimeout), ("header-timeout", headerTimeout), ("body-timeout", bodyTimeout)] {
            guard (KeepAlive(parsing: text)?.seconds ?? 0) > 0 else {
                throw ValidationError("--\(name): \"\(text)\" is not a positive duration such as 30s")
            }
        }
    }

    /// The server's connection limits; errors the guard answers are OpenAI-shaped, as the routes' are.
    var limits: ConnectionLimits {
        func duration(_ text: String) -> Duration { .seconds(KeepAlive(parsing: text)?.seconds ?? 60) }
        return ConnectionLimits(
            idleTimeout: duration(idleTimeout), headerTimeout: duration(headerTimeout), bodyTimeout: duration(bodyTimeout),
            maxBodySize: Self.maxBodySize
        ) { code, message, _ in ErrorShape.openAI.body(APIError(HTTPResponse.Status(code: code), message), requestID: "") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, logLevel: .info) }
        let logger = Logger(label: "modeld-engine")
        let isFile = model.lowercased().hasSuffix(".gguf")
        let directory = URL(filePath: model, directoryHint: isFile ? .notDirectory : .isDirectory)
        let name = servedModelName ?? (isFile ? directory.deletingPathExtension() : directory).standardizedFileURL.lastPathComponent
        let runtime: EngineRuntime
        do {
            runtime = try EngineRuntime(
                directory: directory, servedName: name, maxBatch: maxBatch, quantization: quantize.flatMap(GGMLType.init(onLoadName:)))
        } catch {
            logger.critical("cannot load \(model): \(error)")
            throw ExitCode(1)
        }
        logger.info("model loaded", metadata: ["model": "\(name)", "context": "\(runtime.contextLength)", "quantization": "\(quantize ?? "none")"])
        let limits = self.limits
        let app = Application(
            router: EngineServer(runtime: runtime).router(),
            server: HTTPServerBuilder { responder in GuardedHTTP1Channel(responder: responder, limits: limits) },
            configuration: .init(
                address: .hostname(host, port: port), serverName: "modeld-engine",
                availableConnectionsDelegate: MaximumAvailableConnections(Self.maxConnections, logger: logger)),
            logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        runtime.scheduler.stop()
    }
}

/// `modeld engine bench --model DIR --prompt-tokens 128 --gen-tokens 64 [--batch B]`; with `--json-schema FILE`, the
/// decode plain and constrained to the schema (structured output's cost per token).
struct EngineBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure prefill and decode tokens per second.")

    @Option(name: .long, help: "Model directory or GGUF file; omit with --random.")
    var model: String?

    @Flag(name: .long, help: "Use random bf16 weights of Qwen2.5-0.5B's exact shape, built in memory.")
    var random = false

    @Option(name: .long, help: "Prompt tokens to prefill.")
    var promptTokens = 128

    @Option(name: .long, help: "Tokens to generate per sequence.")
    var genTokens = 64

    @Option(name: .long, help: "Sequences decoded together.")
    var batch = 1

    @Option(name: .long, help: "A JSON Schema file: decode plain and constrained to it, and report the mask's cost per token.")
    var jsonSchema: String?

    @Option(name: .long, help: "The tokenizer's directory for --json-schema with --random (default: the model's).")
    var tokenizer: String?

    func validate() throws {
        guard (model != nil) != random else { throw ValidationError("give either --model DIR or --random") }
        guard promptTokens > 0, genTokens > 0, batch > 0 else { throw ValidationError("counts must be positive") }
    }

    func run() async throws {
        if let jsonSchema {
            guard let tokenizer = tokenizer ?? model else { throw ValidationError("--json-schema with --random needs --tokenizer DIR") }
            print(
                try EngineBench.runMasked(
                    directory: model.map { URL(filePath: $0, directoryHint: .isDirectory) },
                    tokenizerDirectory: URL(filePath: tokenizer, directoryHint: .isDirectory),
                    schema: try Data(contentsOf: URL(filePath: jsonSchema)), promptTokens: promptTokens, generatedTokens: genTokens))
            return
        }
        let result: BenchResult
        if let model {
            result = try EngineBench.run(
                directory: URL(filePath: model, directoryHint: model.lowercased().hasSuffix(".gguf") ? .notDirectory : .isDirectory),
                promptTokens: promptTokens,
                generatedTokens: genTokens, batch: batch)
        } else {
            result = try EngineBench.runRandom(promptTokens: promptTokens, generatedTokens: genTokens, batch: batch)
        }
        print(result)
    }
}
