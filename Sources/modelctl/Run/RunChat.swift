import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient
import Synchronization
import Transfer

/// `modelctl chat REF`: an interactive, streaming chat with a running model; with `--session NAME`, a stored
/// conversation (`/api/v1/sessions`) resumed or begun through the daemon.
struct RunChat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model in the terminal, streaming the replies.",
        discussion: """
            REF is a run name, a catalog ref or a repository id. Without a ready run, the model is started on \
            --engine (default: its catalog default) and modelctl waits for it. Each line you type is a turn; \
            /clear forgets the conversation, /exit (or end of input) quits. With stdin from a pipe, every line \
            is one turn. The engine is reached at its loopback endpoint, so run modelctl on the daemon's host.

            With --session NAME the conversation is stored by the daemon (/api/v1/sessions) and goes through its \
            API, so it works from any host: the session NAME (or id) is resumed, its messages shown, and each turn \
            is added to it; when there is no such session, one is made on REF (with --system, --max-tokens and \
            --temperature as its options). REF may be left out when resuming. /clear deletes the session's \
            messages; a reply cut off (Ctrl-C) is kept as partial.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Run name, catalog ref or repository id (optional when resuming a session).") var ref: String?
    @Option(name: .long, help: "Resume the stored session of this name or id, or make it on REF when there is none.") var session: String?
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
        if let session {
            do {
                try await chat(inSession: session)
            } catch let exit as ExitCode {
                throw exit
            } catch {
                throw ModelctlExit.fail(error)
            }
            return
        }
        guard let ref else {
            printError("modelctl: name the model to chat with (REF), or a session with --session")
            throw ExitCode(64)
        }
        let run: RunSummary
        do {
            run = try await readyRun(ref)
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
    private func readyRun(_ ref: String) async throws -> RunSummary {
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

// MARK: - Sessions

extension RunChat {
    /// The session's conversation through the daemon: resumed (its messages shown), or made on ``ref``.
    private func chat(inSession name: String) async throws {
        let client = try global.client()
        let info = try await resumedSession(name, client: client)
        let path = "/api/v1/sessions/\(pathComponent(info.id))"
        let interactive = isatty(STDIN_FILENO) == 1
        if interactive && !json {
            let messages = info.messages ?? []
            print("session \(info.name ?? info.id) with \(info.model): \(messages.count) message(s) (/clear, /exit)")
            for message in messages {
                print(message.role == "user" ? "> \(message.content)" : message.content + (message.partial ? " [cut off]" : ""))
            }
        }
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
                let _: SessionInfo = try await client.call("POST", "\(path)/rollback", body: SessionRollbackRequest(to: 0))
                continue
            }
            let done = Mutex<SessionStreamEvent?>(nil)
            let streaming = !json
            do {
                try await client.streamLines(
                    "\(path)/messages",
                    body: SessionMessageRequest(content: text, stream: true, maxTokens: maxTokens, temperature: temperature)
                ) { line in
                    guard let event = try? WireJSON.decoder().decode(SessionStreamEvent.self, from: line) else { return true }
                    if let delta = event.delta, streaming {
                        print(delta, terminator: "")
                        fflush(nil)
                    }
                    if event.done == true {
                        done.withLock { $0 = event }
                        return false
                    }
                    return true
                }
            } catch {
                if streaming { print("") }
                throw error
            }
            guard let event = done.withLock({ $0 }) else { throw ClientError(kind: .protocolError, message: "the reply ended without its done line") }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                let reply = ChatReply(content: event.message?.content ?? "", finishReason: event.finishReason, usage: event.usage)
                if let data = try? encoder.encode(reply) { print(String(decoding: data, as: UTF8.self)) }
            } else {
                print("")
            }
            if let error = event.error { printError("modelctl: the reply was cut off: \(error)") }
        }
    }

    /// The session named `name` (with its messages), or a new one of that name on ``ref`` when there is none.
    private func resumedSession(_ name: String, client: ModeldClient) async throws -> SessionInfo {
        do {
            let info: SessionInfo = try await client.call("GET", "/api/v1/sessions/\(pathComponent(name))")
            if let ref, ref.lowercased() != info.model.lowercased() {
                throw ClientError(kind: .api, message: "session \(name) chats with \(info.model), not \(ref): leave REF out to resume it")
            }
            return info
        } catch let error as ClientError where error.code == 404 {
            guard let ref else {
                throw ClientError(kind: .api, code: 404, message: "there is no session \(name): name a model (REF) to begin it")
            }
            let options = maxTokens == nil && temperature == nil ? nil : SessionOptions(maxTokens: maxTokens, temperature: temperature)
            let made: SessionInfo = try await client.call(
                "POST", "/api/v1/sessions", body: SessionCreateRequest(model: ref, name: name, system: system, options: options))
            return made
        }
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
