import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient
import Synchronization
import Transfer

/// `modelctl chat REF`: an interactive, streaming chat with a running model.
struct RunChat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model in the terminal, streaming the replies.",
        discussion: """
            REF is a run name, a catalog ref or a repository id. Without a ready run, the model is started on \
            --engine (default: its catalog default) and modelctl waits for it. Each line you type is a turn; \
            /clear forgets the conversation, /exit (or end of input) quits. With stdin from a pipe, every line \
            is one turn. The engine is reached at its loopback endpoint, so run modelctl on the daemon's host.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run name, catalog ref or repository id.") var ref: String
    @Option(name: .long, help: "Engine to start the model on when no run is ready.") var engine: String?
    @Option(name: .long, help: "A system prompt.") var system: String?
    @Option(name: .long, help: "Maximum tokens per reply.") var maxTokens: Int?
    @Option(name: .long, help: "Sampling temperature.") var temperature: Double?
    @Flag(name: .long, help: "Print each reply as a JSON line {content, finish_reason, usage} instead of streaming text.") var json = false

    struct ChatBody: Encodable, Sendable {
        var model: String
        var messages: [[String: String]]
        var stream = true
        var maxTokens: Int?
        var temperature: Double?
        var streamOptions = ["include_usage": true]
        enum CodingKeys: String, CodingKey {
            case model, messages, stream, temperature
            case maxTokens = "max_tokens"
            case streamOptions = "stream_options"
        }
    }

    func run() async throws {
        let run: RunSummary
        do {
            run = try await readyRun()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw ModelctlExit.fail(error)
        }
        guard let endpoint = run.endpoint else {
            printError("modelctl: run \(run.name) has no endpoint")
            throw ExitCode(1)
        }
        let engineClient = try ModeldClient(endpoint: DaemonEndpoint(baseURL: endpoint))
        let interactive = isatty(STDIN_FILENO) == 1
        if interactive && !json { print("chatting with \(run.servedName) on \(run.engine) (/clear, /exit)") }
        var messages: [[String: String]] = system.map { [["role": "system", "content": $0]] } ?? []
        while true {
            if interactive && !json {
                print("> ", terminator: "")
                fflush(nil)
            }
            guard let line = readLine() else { break }
            let text = trimmingWhitespace(line[...])
            if text.isEmpty { continue }
            if text == "/exit" || text == "/quit" { break }
            if text == "/clear" {
                messages = system.map { [["role": "system", "content": $0]] } ?? []
                continue
            }
            messages.append(["role": "user", "content": text])
            let reply = Mutex<(content: String, finish: String?, usage: LLMUsage?)>(("", nil, nil))
            let streaming = !json
            do {
                try await engineClient.streamLines(
                    "/v1/chat/completions",
                    body: ChatBody(model: run.servedName, messages: messages, maxTokens: maxTokens, temperature: temperature)
                ) { line in
                    guard line.starts(with: Data("data: ".utf8)) else { return true }
                    let payload = line.dropFirst(6)
                    if payload.elementsEqual(Data("[DONE]".utf8)) { return false }
                    guard let chunk = try? JSONDecoder().decode(ChatChunk.self, from: payload) else { return true }
                    if let usage = chunk.usage { reply.withLock { $0.usage = usage } }
                    guard let choice = chunk.choices?.first else { return true }
                    if let delta = choice.delta?.content, !delta.isEmpty {
                        reply.withLock { $0.content += delta }
                        if streaming {
                            print(delta, terminator: "")
                            fflush(nil)
                        }
                    }
                    if let finish = choice.finishReason { reply.withLock { $0.finish = finish } }
                    return true
                }
            } catch {
                if streaming { print("") }
                throw ModelctlExit.fail(error)
            }
            let result = reply.withLock { $0 }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                if let data = try? encoder.encode(ChatReply(content: result.content, finishReason: result.finish, usage: result.usage)) {
                    print(String(decoding: data, as: UTF8.self))
                }
            } else {
                print("")
            }
            messages.append(["role": "assistant", "content": result.content])
        }
    }

    /// A ready run of the model: an existing one, or one started now.
    private func readyRun() async throws -> RunSummary {
        let client = try global.client()
        let runs: [RunSummary] = try await client.call("GET", "/api/v1/models/running")
        let wanted = ref.lowercased()
        if let ready = runs.first(where: {
            $0.state == "ready" && ($0.name.lowercased() == wanted || $0.model.lowercased() == wanted || $0.runID == ref)
        }) {
            return ready
        }
        var run: RunSummary = try await client.call("POST", "/api/v1/models/start", body: StartRequest(model: ref, engine: engine))
        if isatty(STDERR_FILENO) == 1 { printError("starting \(ref) on \(run.engine)…") }
        while run.state == "starting" {
            try await Task.sleep(for: .milliseconds(250))
            run = try await client.call("GET", "/api/v1/models/running/\(run.runID)")
        }
        guard run.state == "ready" else {
            printError("modelctl: \(ref) did not start: \(run.reason ?? run.state)")
            throw ExitCode(1)
        }
        return run
    }
}

/// One streamed chat completion chunk, as much of it as `chat` shows.
private struct ChatChunk: Decodable {
    struct Choice: Decodable {
        struct Delta: Decodable {
            var content: String?
        }
        var delta: Delta?
        var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case delta
            case finishReason = "finish_reason"
        }
    }

    var choices: [Choice]?
    /// Nil when absent or not the usual counts: a chunk's text is shown whatever its usage holds.
    var usage: LLMUsage?

    enum CodingKeys: String, CodingKey {
        case choices, usage
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        choices = try container.decodeIfPresent([Choice].self, forKey: .choices)
        usage = try? container.decode(LLMUsage.self, forKey: .usage)
    }
}

/// A reply as `chat --json` prints it: `content`, `finish_reason` and `usage` (null when the engine sent none).
private struct ChatReply: Encodable {
    var content: String
    var finishReason: String?
    var usage: LLMUsage?

    enum CodingKeys: String, CodingKey {
        case content
        case finishReason = "finish_reason"
        case usage
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(content, forKey: .content)
        try container.encode(finishReason, forKey: .finishReason)
        try container.encode(usage, forKey: .usage)
    }
}
