import ArgumentParser
import FoundationEssentials
import Glibc
import ModeldAPI
import ModeldClient

/// `modelctl keys`: API keys for clients that reach modeld over TCP.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Create, list and revoke API keys.",
        subcommands: [KeysCreate.self, KeysList.self, KeysRevoke.self])
}

/// `modelctl keys create --name N [--scope inference|admin] [--rate PER_MINUTE]`: prints the key alone on its last line.
struct KeysCreate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a key; it is printed once, alone on the last line.")

    @OptionGroup var global: GlobalOptions
    @Option(name: .long, help: "A unique name.") var name: String
    @Option(name: .long, help: "inference (the OpenAI API) or admin (everything).") var scope = "inference"
    @Option(name: .long, help: "Requests per minute allowed (a 429 with Retry-After beyond it).") var rate: Int?
    @Flag(name: .long, help: "Print JSON (the key included).") var json = false

    func run() async throws {
        let info: KeyInfo
        do {
            info = try await global.client().call("POST", "/api/v1/keys", body: KeyCreateRequest(name: name, scope: scope, ratePerMinute: rate))
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
        var rows = [["ID", "NAME", "PREFIX", "SCOPE", "STATE"]]
        for key in keys { rows.append([key.id, key.name, key.prefix + "…", key.scope, key.revoked ? "revoked" : "active"]) }
        print(table(rows))
    }
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
