/// Which engine the fake plays, read from its command line like the real engines read theirs.
struct FakeRole: Sendable {
    enum Kind: String, Sendable { case vllm, sglang, builtin, ollama }
    var kind: Kind
    var port: Int
    var servedName: String?
    var modelPath: String?
    /// vLLM's worker of a multi-node run (`serve DIR ... --headless`): no HTTP port, only a process.
    var headless = false

    init?(arguments: [String], environment: [String: String]) {
        func value(_ flag: String) -> String? {
            guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
            return arguments[index + 1]
        }
        if let index = arguments.firstIndex(of: "-m"), index + 1 < arguments.count, arguments[index + 1] == "sglang.launch_server" {
            kind = .sglang
            modelPath = value("--model-path")
        } else if arguments.count > 1, arguments[1] == "engine" {
            kind = .builtin
            modelPath = value("--model")
        } else if arguments.count > 2, arguments[1] == "serve", !arguments[2].hasPrefix("-") {
            kind = .vllm
            modelPath = arguments[2]
        } else if arguments.count >= 2, arguments[1] == "serve" {
            kind = .ollama
        } else {
            return nil
        }
        if kind == .ollama {
            guard let host = environment["OLLAMA_HOST"], let colon = host.lastIndex(of: ":"),
                let port = Int(host[host.index(after: colon)...])
            else { return nil }
            self.port = port
        } else if kind == .vllm, arguments.contains("--headless") {
            // vLLM refuses a headless start outside a multi-node run (a worker needs its node rank and head).
            guard value("--node-rank").flatMap(Int.init).map({ $0 > 0 }) == true, value("--master-addr") != nil else { return nil }
            headless = true
            port = 0
        } else {
            guard let port = value("--port").flatMap(Int.init), value("--host") == "127.0.0.1" else { return nil }
            self.port = port
            servedName = value("--served-model-name")
        }
    }
}
