import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

extension UpstreamKind: ExpressibleByArgument {}
extension RoutingStrategy: ExpressibleByArgument {}

/// `modelctl upstream`: servers the gateway forwards to besides local runs (docs/gateway.md).
struct UpstreamCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upstream", abstract: "Add, list, test and remove upstreams: remote servers the gateway routes to.",
        subcommands: [UpstreamAdd.self, UpstreamList.self, UpstreamRemove.self, UpstreamDisable.self, UpstreamEnable.self, UpstreamTest.self])
}

/// `modelctl upstream add NAME --url URL ...`: adds an upstream, or replaces the settings of the one with this name.
struct UpstreamAdd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add", abstract: "Add an upstream (or change one); its key is read by modeld from a variable or a file, never stored.")

    // `--url` is the upstream's here: modeld's own URL is `--daemon-url` (or MODELD_URL).
    @Option(name: .customLong("daemon-url"), help: "modeld's URL (env MODELD_URL); without it, the control socket.") var daemonURL: String?
    @Option(name: .long, help: "modeld's control socket (env MODELD_CONTROL_SOCKET).") var socket: String?
    @Option(name: .long, help: "API key for a TCP daemon that requires one (env MODELD_API_KEY).") var apiKey: String?
    @Option(name: .long, help: "CA certificates (PEM) to verify an https:// --daemon-url with (env MODELD_CACERT).") var cacert: String?
    @Argument(help: "A unique name (its backend is upstream:NAME).") var name: String
    @Option(name: .long, help: "Its URL: an OpenAI base URL (https://api.openai.com/v1), an Azure resource, an Ollama or modeld server.") var url:
        String
    @Option(name: .long, help: "openai, azure, ollama or modeld.") var kind: UpstreamKind = .openai
    @Option(name: .long, help: "The variable in modeld's environment that holds the key.") var apiKeyEnv: String?
    @Option(name: .long, help: "A file modeld reads the key from.") var apiKeyFile: String?
    @Option(name: .long, help: "Azure's api-version.") var apiVersion: String?
    @Option(name: .long, help: "The models it serves, comma-separated (Azure: its deployments).") var models: String?
    @Flag(name: .long, help: "List its models (and again periodically).") var discover = false
    @Option(name: .long, help: "Lower is tried first (local runs: 0).") var priority: Int?
    @Option(name: .long, help: "Share under the weighted strategy (default 1).") var weight: Int?
    @Option(name: .long, help: "Price per million prompt tokens.") var costIn: Double?
    @Option(name: .long, help: "Price per million completion tokens.") var costOut: Double?
    @Option(name: .long, help: "The most requests in flight to it.") var maxConcurrency: Int?
    @Option(name: .long, help: "Time to the reply's first byte, such as 30s (default 30s).") var timeout: String?
    @Flag(name: .long, help: "Print JSON.") var json = false

    private var global: GlobalOptions {
        var global = GlobalOptions()
        global.url = daemonURL
        global.socket = socket
        global.apiKey = apiKey
        global.cacert = cacert
        return global
    }

    func validate() throws {
        if apiKeyEnv != nil && apiKeyFile != nil { throw ValidationError("give --api-key-env or --api-key-file, not both") }
        if models == nil && !discover { throw ValidationError("give --models a,b or --discover") }
        if let timeout, seconds(timeout) == nil { throw ValidationError("--timeout must be a duration such as 30s or 2m") }
    }

    private func seconds(_ text: String) -> Double? {
        if let value = Double(text), value > 0 { return value }
        return KeepAlive(parsing: text)?.seconds.flatMap { $0 > 0 ? Double($0) : nil }
    }

    func run() async throws {
        let request = UpstreamRequest(
            name: name, kind: kind, url: url, apiKeyEnv: apiKeyEnv, apiKeyFile: apiKeyFile, apiVersion: apiVersion,
            models: models.map(commaList), discover: discover, priority: priority,
            weight: weight, costIn: costIn, costOut: costOut, maxConcurrency: maxConcurrency, timeout: timeout.flatMap(seconds))
        let info: UpstreamInfo
        do {
            info = try await global.client().call("POST", "/api/v1/upstreams", body: request)
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(info) }
        print(
            "upstream \(info.name) (\(info.kind.rawValue), \(info.url)): \(info.models.count) models\(info.models.isEmpty ? "" : ": " + info.models.joined(separator: ", "))"
        )
        if (info.apiKeyEnv != nil || info.apiKeyFile != nil) && !info.apiKeySet {
            printError("modelctl: warning: modeld cannot read the key from \(info.apiKeyEnv.map { "$\($0)" } ?? info.apiKeyFile ?? "")")
        }
    }
}

/// `modelctl upstream list`.
struct UpstreamList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List upstreams (never their keys).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let upstreams: [UpstreamInfo]
        do {
            upstreams = try await global.client().call("GET", "/api/v1/upstreams")
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(upstreams) }
        var rows = [["NAME", "KIND", "URL", "KEY", "STATE", "PRIORITY", "WEIGHT", "MODELS"]]
        for upstream in upstreams {
            let key = upstream.apiKeyEnv.map { "$\($0)" } ?? upstream.apiKeyFile ?? "-"
            rows.append([
                upstream.name, upstream.kind.rawValue, upstream.url, key + (upstream.apiKeySet || key == "-" ? "" : " (missing)"), upstream.state,
                String(upstream.priority), String(upstream.weight), upstream.models.joined(separator: ","),
            ])
        }
        print(table(rows))
    }
}

/// `a, b,c` as `["a", "b", "c"]`.
private func commaList(_ text: String) -> [String] {
    text.split(separator: ",").map { String($0.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()) }.filter { !$0.isEmpty }
}

/// The commands that name one upstream and print it back.
private func upstreamAction(_ global: GlobalOptions, _ name: String, _ action: String, json: Bool, done: String) async throws {
    let info: UpstreamInfo
    do {
        info = try await global.client().call("POST", "/api/v1/upstreams/\(pathComponent(name))/\(action)")
    } catch {
        throw ModelctlExit.fail(error)
    }
    if json { return printJSON(info) }
    print("\(done) \(info.name)")
}

/// `modelctl upstream rm NAME`.
struct UpstreamRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove an upstream.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The upstream's name.") var name: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws { try await upstreamAction(global, name, "remove", json: json, done: "removed") }
}

/// `modelctl upstream disable NAME`.
struct UpstreamDisable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "disable", abstract: "Send an upstream no more requests (it stays configured).")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The upstream's name.") var name: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws { try await upstreamAction(global, name, "disable", json: json, done: "disabled") }
}

/// `modelctl upstream enable NAME`.
struct UpstreamEnable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "enable", abstract: "Send an upstream requests again.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The upstream's name.") var name: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws { try await upstreamAction(global, name, "enable", json: json, done: "enabled") }
}

/// `modelctl upstream test NAME`: lists its models with its key; exits 1 when that fails.
struct UpstreamTest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "test", abstract: "Check that an upstream answers with its key.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The upstream's name.") var name: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let result: UpstreamTestResult
        do {
            result = try await global.client().call("POST", "/api/v1/upstreams/\(pathComponent(name))/test")
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json {
            printJSON(result)
        } else if result.ok {
            print("\(result.name): ok in \(Int(result.latencyMs)) ms, \(result.models.count) models")
        } else {
            printError("modelctl: \(result.name): \(result.error ?? "failed")")
        }
        if !result.ok { throw ExitCode(1) }
    }
}

/// `modelctl group`: model groups, which route a public name to several models' backends with a strategy.
struct GroupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "group", abstract: "Model groups and aliases: one name, several backends, a routing strategy.",
        subcommands: [GroupSet.self, GroupList.self, GroupRemove.self])
}

/// `modelctl group set NAME [--targets a,b] [--strategy S]`.
struct GroupSet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set", abstract: "Create or replace a model group.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The name clients ask for.") var name: String
    @Option(name: .long, help: "The models whose backends serve it, comma-separated (default: the name itself).") var targets: String?
    @Option(name: .long, help: "local-first, priority, weighted, round-robin, least-busy, latency or cost (default: the daemon's).")
    var strategy: RoutingStrategy?
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let group = ModelGroupInfo(
            name: name, targets: targets.map(commaList) ?? [], strategy: strategy)
        let saved: ModelGroupInfo
        do {
            saved = try await global.client().call("POST", "/api/v1/model-groups", body: group)
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(saved) }
        print(
            "group \(saved.name) -> \(saved.targets.isEmpty ? saved.name : saved.targets.joined(separator: ", ")) (\(saved.strategy?.rawValue ?? "default strategy"))"
        )
    }
}

/// `modelctl group list`.
struct GroupList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List model groups.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let groups: [ModelGroupInfo]
        do {
            groups = try await global.client().call("GET", "/api/v1/model-groups")
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(groups) }
        var rows = [["NAME", "TARGETS", "STRATEGY"]]
        for group in groups { rows.append([group.name, group.targets.joined(separator: ","), group.strategy?.rawValue ?? "default"]) }
        print(table(rows))
    }
}

/// `modelctl group rm NAME`.
struct GroupRemove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a model group.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The group's name.") var name: String

    func run() async throws {
        do {
            let _: EmptyPayload = try await global.client().call("POST", "/api/v1/model-groups/\(pathComponent(name))/remove")
        } catch {
            throw ModelctlExit.fail(error)
        }
        print("removed group \(name)")
    }
}
