import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl keys`: API keys for clients that reach modeld over TCP.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Create, list, change and revoke API keys.",
        subcommands: [KeysCreate.self, KeysList.self, KeysUpdate.self, KeysRevoke.self])
}

/// A key's limits as options, shared by `keys create` and `keys update`.
struct KeyLimitOptions: ParsableArguments {
    @Option(name: .long, help: "Requests per minute allowed (a 429 with Retry-After beyond it).") var rate: Int?
    @Option(name: .long, help: "Tokens (prompt and completion) per UTC day.") var tokensPerDay: Int?
    @Option(name: .long, help: "Tokens (prompt and completion) per UTC month.") var tokensPerMonth: Int?
    @Option(name: .long, help: "The most the key may spend per UTC month, in the unit of the backends' costs.") var spendCap: Double?
    @Option(name: .long, help: "The only models the key may request, comma-separated (an empty value allows any).") var models: String?

    var request: KeyLimitsRequest {
        KeyLimitsRequest(
            ratePerMinute: rate, tokensPerDay: tokensPerDay, tokensPerMonth: tokensPerMonth, spendCap: spendCap,
            allowedModels: models.map { $0.split(separator: ",").map { String($0.filter { !$0.isWhitespace }) }.filter { !$0.isEmpty } })
    }
}

/// `modelctl keys create --name N [--scope inference|admin] [--rate PER_MINUTE] [--tokens-per-day N] [--tokens-per-month N]
/// [--spend-cap X] [--models a,b]`: prints the key alone on its last line.
struct KeysCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a key; it is printed once, alone on the last line.")

    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "A unique name.") var name: String
    @Option(name: .long, help: "inference (the OpenAI API) or admin (everything).") var scope = "inference"
    @OptionGroup var limits: KeyLimitOptions
    @Flag(name: .long, help: "Print JSON (the key included).") var json = false

    func run() async throws {
        let info: KeyInfo
        do {
            info = try await global.client().call("POST", "/api/v1/keys", body: KeyCreateRequest(name: name, scope: scope, limits: limits.request))
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(info) }
        print("created \(info.scope) key \(info.name) (\(info.id)); it is shown only now:")
        print(info.key ?? "")
    }
}

/// `modelctl keys list`.
struct KeysList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List keys (never their values).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let keys: [KeyInfo]
        do {
            keys = try await global.client().call("GET", "/api/v1/keys")
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(keys) }
        var rows = [["ID", "NAME", "PREFIX", "SCOPE", "STATE", "LIMITS"]]
        for key in keys { rows.append([key.id, key.name, key.prefix + "…", key.scope, key.revoked ? "revoked" : "active", describeLimits(key)]) }
        print(table(rows))
    }
}

/// `modelctl keys update ID|NAME [--rate N] [--tokens-per-day N] [--tokens-per-month N] [--spend-cap X] [--models a,b]`:
/// changes the limits given; 0 (or `--models ""`) removes one.
struct KeysUpdate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Change a key's limits; 0 (or --models \"\") removes a limit.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Key id or name.") var key: String
    @OptionGroup var limits: KeyLimitOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        guard limits.request != KeyLimitsRequest() else { throw ValidationError("give at least one limit to change") }
        let info: KeyInfo
        do {
            info = try await global.client().call("PATCH", "/api/v1/keys/\(pathComponent(key))", body: limits.request)
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(info) }
        print("updated \(info.name) (\(info.id)): \(describeLimits(info))")
    }
}

/// A key's limits in one line: `60/min, 10000 tokens/day, models a, b`, or `no limits`.
func describeLimits(_ key: KeyInfo) -> String {
    var parts: [String] = []
    if let rate = key.ratePerMinute { parts.append("\(rate)/min") }
    if let tokens = key.tokensPerDay { parts.append("\(tokens) tokens/day") }
    if let tokens = key.tokensPerMonth { parts.append("\(tokens) tokens/month") }
    if let cap = key.spendCap { parts.append("spend cap \(cap)/month") }
    if let models = key.allowedModels { parts.append("models \(models.joined(separator: ", "))") }
    return parts.isEmpty ? "no limits" : parts.joined(separator: ", ")
}

/// `modelctl keys revoke ID|NAME`.
struct KeysRevoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a key.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Key id or name.") var key: String
    @Flag(name: .long, help: "Print JSON.") var json = false

    func run() async throws {
        let info: KeyInfo
        do {
            info = try await global.client().call("POST", "/api/v1/keys/\(pathComponent(key))/revoke")
        } catch {
            throw ModelctlExit.fail(error)
        }
        if json { return printJSON(info) }
        print("revoked \(info.name) (\(info.id))")
    }
}
