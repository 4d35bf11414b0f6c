import ArgumentParser
import Foundation
import ModeldAPI
import Synchronization

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
            FileHandle.standardError.write(Data("modelctl: run \(run.name) has no endpoint\n".utf8))
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
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            if text == "/exit" || text == "/quit" { break }
            if text == "/clear" {
                messages = system.map { [["role": "system", "content": $0]] } ?? []
                continue
            }
            messages.append(["role": "user", "content": text])
            let reply = Mutex<(content: String, finish: String?, usage: [String: Int]?)>(("", nil, nil))
            let streaming = !json
            do {
                try await engineClient.streamLines(
                    "/v1/chat/completions",
                    body: ChatBody(model: run.servedName, messages: messages, maxTokens: maxTokens, temperature: temperature)
                ) { line in
                    guard line.starts(with: Data("data: ".utf8)) else { return true }
                    let payload = line.dropFirst(6)
                    if payload.elementsEqual(Data("[DONE]".utf8)) { return false }
                    guard let object = try? JSONSerialization.jsonObject(with: payload) as? [String: Any] else { return true }
                    if let usage = object["usage"] as? [String: Int] { reply.withLock { $0.usage = usage } }
                    guard let choice = (object["choices"] as? [[String: Any]])?.first else { return true }
                    if let delta = (choice["delta"] as? [String: Any])?["content"] as? String, !delta.isEmpty {
                        reply.withLock { $0.content += delta }
                        if streaming {
                            print(delta, terminator: "")
                            fflush(nil)
                        }
                    }
                    if let finish = choice["finish_reason"] as? String { reply.withLock { $0.finish = finish } }
                    return true
                }
            } catch {
                if streaming { print("") }
                throw ModelctlExit.fail(error)
            }
            let result = reply.withLock { $0 }
            if json {
                let object: [String: Any] = ["content": result.content, "finish_reason": result.finish as Any? ?? NSNull(), "usage": result.usage as Any? ?? NSNull()]
                if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
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
        if let ready = runs.first(where: { $0.state == "ready" && ($0.name.lowercased() == wanted || $0.model.lowercased() == wanted || $0.runID == ref) }) {
            return ready
        }
        var run: RunSummary = try await client.call("POST", "/api/v1/models/start", body: StartRequest(model: ref, engine: engine))
        if isatty(STDERR_FILENO) == 1 { FileHandle.standardError.write(Data("starting \(ref) on \(run.engine)…\n".utf8)) }
        while run.state == "starting" {
            try await Task.sleep(for: .milliseconds(250))
            run = try await client.call("GET", "/api/v1/models/running/\(run.runID)")
        }
        guard run.state == "ready" else {
            FileHandle.standardError.write(Data("modelctl: \(ref) did not start: \(run.reason ?? run.state)\n".utf8))
            throw ExitCode(1)
        }
        return run
    }
}
