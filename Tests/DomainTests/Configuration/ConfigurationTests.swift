import Foundation
import ModeldAPI
import Testing

@testable import Catalog
@testable import Daemon
@testable import Downloads
@testable import Hubs
@testable import ModelStore

@Suite("Configuration precedence")
struct ConfigurationTests {
    let directory: TemporaryDirectory
    let configFile: String

    init() throws {
        directory = try TemporaryDirectory()
        configFile = directory.path("config.json")
        let json = #"{"listen": "127.0.0.3:3333", "data_dir": "/from/file", "catalog": "/file/catalog.json"}"#
        try Data(json.utf8).write(to: URL(filePath: configFile))
    }

    @Test("flags win over the environment, which wins over the file, which wins over defaults")
    func precedence() async throws {
        let environment = ["MODELD_LISTEN": "127.0.0.2:2222", "MODELD_DATA_DIR": "/from/env", "HOME": "/home/u"]

        let all = try await DaemonConfiguration.resolve(
            flags: .init(listen: "127.0.0.1:1111", dataDir: "/from/flag", config: configFile), environment: environment)
        #expect(all.listen == ListenAddress(host: "127.0.0.1", port: 1111))
        #expect(all.dataDirectory.root.path == "/from/flag")
        #expect(all.catalogPath == "/file/catalog.json")

        let noFlags = try await DaemonConfiguration.resolve(flags: .init(config: configFile), environment: environment)
        #expect(noFlags.listen.description == "127.0.0.2:2222")
        #expect(noFlags.dataDirectory.root.path == "/from/env")

        let fileOnly = try await DaemonConfiguration.resolve(
            flags: .init(), environment: ["MODELD_CONFIG": configFile, "HOME": "/home/u"])
        #expect(fileOnly.listen.description == "127.0.0.3:3333")
        #expect(fileOnly.dataDirectory.root.path == "/from/file")
        #expect(fileOnly.configFile == configFile)
    }

    @Test("ollama_listen: none by default; flag, MODELD_OLLAMA_LISTEN, config key; a bad address names its key")
    func ollamaListen() async throws {
        let home = ["HOME": "/home/u"]
        #expect(try await DaemonConfiguration.resolve(flags: .init(), environment: home).ollamaListen == nil)
        let file = directory.path("ollama.json")
        try Data(#"{"ollama_listen": "127.0.0.3:11434"}"#.utf8).write(to: URL(filePath: file))
        let fromFile = try await DaemonConfiguration.resolve(flags: .init(config: file), environment: home)
        #expect(fromFile.ollamaListen == ListenAddress(host: "127.0.0.3", port: 11434))
        let fromEnvironment = try await DaemonConfiguration.resolve(
            flags: .init(config: file), environment: home.merging(["MODELD_OLLAMA_LISTEN": "127.0.0.2:11434"]) { $1 })
        #expect(fromEnvironment.ollamaListen?.description == "127.0.0.2:11434")
        let fromFlag = try await DaemonConfiguration.resolve(
            flags: .init(config: file, ollamaListen: "[::1]:11434"), environment: home.merging(["MODELD_OLLAMA_LISTEN": "127.0.0.2:11434"]) { $1 })
        #expect(fromFlag.ollamaListen == ListenAddress(host: "::1", port: 11434))
        await #expect {
            _ = try await DaemonConfiguration.resolve(flags: .init(ollamaListen: "11434"), environment: home)
        } throws: { ($0 as? ConfigurationError)?.key == "ollama_listen" }
    }

    @Test("default_model: none by default; config key, MODELD_DEFAULT_MODEL, flag; blank is none")
    func defaultModel() async throws {
        let home = ["HOME": "/home/u"]
        #expect(try await DaemonConfiguration.resolve(flags: .init(), environment: home).defaultModel == nil)
        let file = directory.path("default-model.json")
        try Data(#"{"default_model": "qwen2.5:0.5b"}"#.utf8).write(to: URL(filePath: file))
        #expect(try await DaemonConfiguration.resolve(flags: .init(config: file), environment: home).defaultModel == "qwen2.5:0.5b")
        let environment = home.merging(["MODELD_DEFAULT_MODEL": "chat"]) { $1 }
        #expect(try await DaemonConfiguration.resolve(flags: .init(config: file), environment: environment).defaultModel == "chat")
        let flagged = try await DaemonConfiguration.resolve(flags: .init(config: file, defaultModel: "tiny"), environment: environment)
        #expect(flagged.defaultModel == "tiny")
        #expect(try await DaemonConfiguration.resolve(flags: .init(defaultModel: " "), environment: home).defaultModel == nil)
    }

    @Test("defaults: 127.0.0.1:8700 and the data directory from systemd, XDG, or HOME")
    func defaults() async throws {
        let plain = try await DaemonConfiguration.resolve(flags: .init(), environment: ["HOME": "/home/u"])
        #expect(plain.listen.description == "127.0.0.1:8700")
        #expect(plain.dataDirectory.root.path == "/home/u/.local/share/modeld")
        #expect(plain.catalogPath == nil)

        let xdg = try await DaemonConfiguration.resolve(flags: .init(), environment: ["HOME": "/home/u", "XDG_DATA_HOME": "/xdg"])
        #expect(xdg.dataDirectory.root.path == "/xdg/modeld")

        let systemd = try await DaemonConfiguration.resolve(
            flags: .init(), environment: ["HOME": "/home/u", "XDG_DATA_HOME": "/xdg", "STATE_DIRECTORY": "/var/lib/modeld:/var/lib/other"])
        #expect(systemd.dataDirectory.root.path == "/var/lib/modeld")
    }

    @Test("bad values are refused with the key named", arguments: ["8700", "host:", ":80", "h:99999", "[::1]80"])
    func badListen(value: String) async throws {
        let error = try await #require(throws: ConfigurationError.self) {
            try await DaemonConfiguration.resolve(flags: .init(listen: value), environment: [:])
        }
        #expect(error.description.hasPrefix("configuration listen: \"\(value)\""))
    }

    @Test("IPv6 listen addresses parse")
    func ipv6() throws {
        let address = try ListenAddress(parsing: "[::1]:8700")
        #expect(address.host == "::1" && address.port == 8700 && address.isLoopback)
        #expect(address.description == "[::1]:8700")
    }

    @Test("ca_bundle: flag, MODELD_CA_BUNDLE, config file, then CURL_CA_BUNDLE, SSL_CERT_FILE, REQUESTS_CA_BUNDLE; unusable files stop start-up")
    func caBundle() async throws {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        let names = ["flag", "setting", "file", "curl", "openssl", "requests"]
        for name in names { try Data(pem.utf8).write(to: URL(filePath: directory.path("\(name).pem"))) }
        let file = directory.path("ca.json")
        try Data(#"{"ca_bundle": "\#(directory.path("file.pem"))"}"#.utf8).write(to: URL(filePath: file))
        let flags = DaemonConfiguration.Flags(config: file, caBundle: directory.path("flag.pem"))
        var environment = [
            "HOME": "/home/u", "MODELD_CA_BUNDLE": directory.path("setting.pem"), "CURL_CA_BUNDLE": directory.path("curl.pem"),
            "SSL_CERT_FILE": directory.path("openssl.pem"), "REQUESTS_CA_BUNDLE": directory.path("requests.pem"),
        ]
        func resolved(_ flags: DaemonConfiguration.Flags) async throws -> (String?, String?) {
            let configuration = try await DaemonConfiguration.resolve(flags: flags, environment: environment)
            return (configuration.caBundle.map { URL(filePath: $0).lastPathComponent }, configuration.caBundleSource)
        }
        #expect(try await resolved(flags) == ("flag.pem", "ca_bundle"))
        #expect(try await resolved(.init(config: file)) == ("setting.pem", "ca_bundle"))
        environment["MODELD_CA_BUNDLE"] = nil
        #expect(try await resolved(.init(config: file)) == ("file.pem", "ca_bundle"))
        #expect(try await resolved(.init()) == ("curl.pem", "CURL_CA_BUNDLE"))
        environment["CURL_CA_BUNDLE"] = ""
        #expect(try await resolved(.init()) == ("openssl.pem", "SSL_CERT_FILE"))
        environment["SSL_CERT_FILE"] = nil
        #expect(try await resolved(.init()) == ("requests.pem", "REQUESTS_CA_BUNDLE"))
        environment["REQUESTS_CA_BUNDLE"] = nil
        #expect(try await resolved(.init()) == (nil, nil))

        let missing = directory.path("missing.pem")
        let error = try await #require(throws: ConfigurationError.self) {
            try await DaemonConfiguration.resolve(flags: .init(caBundle: missing), environment: environment)
        }
        #expect(error.description == "configuration ca_bundle: file \(missing) does not exist or cannot be read")
        let fromVariable = try await #require(throws: ConfigurationError.self) {
            try await DaemonConfiguration.resolve(flags: .init(), environment: environment.merging(["SSL_CERT_FILE": missing]) { $1 })
        }
        #expect(fromVariable.description == "configuration SSL_CERT_FILE: file \(missing) does not exist or cannot be read")
        let notPEM = directory.path("config.json")
        let wrongKind = try await #require(throws: ConfigurationError.self) {
            try await DaemonConfiguration.resolve(flags: .init(caBundle: notPEM), environment: environment)
        }
        #expect(wrongKind.description.contains("\(notPEM) holds no PEM certificate"))
        let unreadable = try await #require(throws: ConfigurationError.self) {
            try await DaemonConfiguration.resolve(flags: .init(caBundle: directory.url.path), environment: environment)
        }
        #expect(unreadable.key == "ca_bundle" && unreadable.description.contains("cannot be read"))
    }

    @Test("tls_cert and tls_key: flags, MODELD_TLS_CERT and MODELD_TLS_KEY, config keys; both or neither; unreadable files named")
    func tlsFiles() async throws {
        for name in ["flag.crt", "flag.key", "env.crt", "env.key", "file.crt", "file.key"] {
            try Data("-----BEGIN CERTIFICATE-----\n".utf8).write(to: URL(filePath: directory.path(name)))
        }
        let file = directory.path("tls.json")
        try Data(#"{"tls_cert": "\#(directory.path("file.crt"))", "tls_key": "\#(directory.path("file.key"))"}"#.utf8).write(
            to: URL(filePath: file))
        var environment = ["HOME": "/home/u", "MODELD_TLS_CERT": directory.path("env.crt"), "MODELD_TLS_KEY": directory.path("env.key")]
        func resolved(_ flags: DaemonConfiguration.Flags) async throws -> [String?] {
            let configuration = try await DaemonConfiguration.resolve(flags: flags, environment: environment)
            return [configuration.tlsCert, configuration.tlsKey].map { $0.map { URL(filePath: $0).lastPathComponent } }
        }
        #expect(
            try await resolved(.init(config: file, tlsCert: directory.path("flag.crt"), tlsKey: directory.path("flag.key"))) == [
                "flag.crt", "flag.key",
            ])
        #expect(try await resolved(.init(config: file)) == ["env.crt", "env.key"])
        environment = ["HOME": "/home/u"]
        #expect(try await resolved(.init(config: file)) == ["file.crt", "file.key"])
        #expect(try await resolved(.init()) == [nil, nil])

        let onlyCert = try await #require(throws: ConfigurationError.self) { try await resolved(.init(tlsCert: directory.path("flag.crt"))) }
        #expect(onlyCert.key == "tls_key" && onlyCert.problem.contains("tls_cert is"))
        let onlyKey = try await #require(throws: ConfigurationError.self) { try await resolved(.init(tlsKey: directory.path("flag.key"))) }
        #expect(onlyKey.key == "tls_cert")
        let missing = directory.path("missing.key")
        let unreadable = try await #require(throws: ConfigurationError.self) {
            try await resolved(.init(tlsCert: directory.path("flag.crt"), tlsKey: missing))
        }
        #expect(unreadable.description == "configuration tls_key: file \(missing) does not exist or cannot be read")
        let folder = try await #require(throws: ConfigurationError.self) {
            try await resolved(.init(tlsCert: directory.url.path, tlsKey: directory.path("flag.key")))
        }
        #expect(folder.key == "tls_cert" && folder.description.contains("cannot be read"))
    }

    @Test("a missing or malformed config file named explicitly is an error")
    func badFile() async throws {
        let missing = try await #require(throws: ConfigurationError.self) {
            try await DaemonConfiguration.resolve(flags: .init(config: directory.path("nope.json")), environment: [:])
        }
        #expect(missing.description.contains("nope.json"))
        let broken = directory.path("broken.json")
        try Data("{listen".utf8).write(to: URL(filePath: broken))
        let malformed = try await #require(throws: ConfigurationError.self) {
            try await DaemonConfiguration.resolve(flags: .init(config: broken), environment: [:])
        }
        #expect(malformed.description.contains("not valid JSON"))
    }

    @Test("cors_origins and allowed_hosts: arrays in the file and flags, comma-separated in the environment; bad origins refused")
    func originLists() async throws {
        let file = directory.path("origins.json")
        try Data(#"{"cors_origins": ["https://App.example.com/"], "allowed_hosts": ["Models.Internal"]}"#.utf8).write(to: URL(filePath: file))
        let fromFile = try await DaemonConfiguration.resolve(flags: .init(config: file), environment: ["HOME": "/home/u"])
        #expect(fromFile.corsOrigins == ["https://app.example.com"])
        #expect(fromFile.allowedHosts == ["models.internal"])
        let fromEnvironment = try await DaemonConfiguration.resolve(
            flags: .init(config: file),
            environment: ["HOME": "/home/u", "MODELD_CORS_ORIGINS": "http://a.test:3000, *", "MODELD_ALLOWED_HOSTS": "x.test,y.test"])
        #expect(fromEnvironment.corsOrigins == ["http://a.test:3000", "*"])
        #expect(fromEnvironment.allowedHosts == ["x.test", "y.test"])
        let fromFlags = try await DaemonConfiguration.resolve(
            flags: .init(config: file, corsOrigins: ["http://localhost:5173"]),
            environment: ["HOME": "/home/u", "MODELD_CORS_ORIGINS": "http://a.test"])
        #expect(fromFlags.corsOrigins == ["http://localhost:5173"])
        #expect(try await DaemonConfiguration.resolve(flags: .init(), environment: ["HOME": "/home/u"]).corsOrigins.isEmpty)
        for bad in ["app.example.com", "ftp://x.test", "https://x.test/path", "https://"] {
            let error = await #expect(throws: ConfigurationError.self) {
                try await DaemonConfiguration.resolve(flags: .init(corsOrigins: [bad]), environment: ["HOME": "/home/u"])
            }
            #expect(error?.key == "cors_origins", "\(bad)")
        }
    }
}

@Suite("Loaded-run settings")
struct LoadedRunSettingsTests {
    @Test(
        "keep-alive durations parse; nonsense is refused",
        arguments: [
            ("300", 300), ("30s", 30), ("5m", 300), ("1h30m", 5400), ("0", 0), ("never", nil), ("-1", nil),
        ] as [(String, Int?)])
    func keepAlive(text: String, seconds: Int?) throws {
        let parsed = try #require(KeepAlive(parsing: text))
        #expect(parsed.seconds == seconds)
    }

    @Test("not durations", arguments: ["", "5x", "m5", "1m1h", "-5", "5 m", "1.5h"])
    func notKeepAlive(text: String) {
        #expect(KeepAlive(parsing: text) == nil)
    }

    @Test("defaults, environment, a config file with numbers, flags; bad values name their key")
    func settings() async throws {
        let plain = try await DaemonConfiguration.resolve(flags: .init(), environment: ["HOME": "/home/u"])
        #expect(plain.onDemandKeepAlive == .seconds(300) && plain.maxLoadedRuns == 3 && plain.onDemandTimeout == .seconds(300))

        let directory = try TemporaryDirectory()
        let file = directory.path("config.json")
        try Data(#"{"max_loaded_runs": 5, "on_demand_keep_alive": 60, "on_demand_timeout": "90s"}"#.utf8).write(to: URL(filePath: file))
        let fromFile = try await DaemonConfiguration.resolve(flags: .init(config: file), environment: ["HOME": "/home/u"])
        #expect(fromFile.maxLoadedRuns == 5 && fromFile.onDemandKeepAlive == .seconds(60) && fromFile.onDemandTimeout == .seconds(90))

        let fromEnvironment = try await DaemonConfiguration.resolve(
            flags: .init(config: file), environment: ["HOME": "/home/u", "MODELD_MAX_LOADED_RUNS": "0", "MODELD_ON_DEMAND_KEEP_ALIVE": "never"])
        #expect(fromEnvironment.maxLoadedRuns == 0 && fromEnvironment.onDemandKeepAlive == .never)

        let fromFlags = try await DaemonConfiguration.resolve(
            flags: .init(config: file, onDemandKeepAlive: "10m", maxLoadedRuns: "2"), environment: ["HOME": "/home/u", "MODELD_MAX_LOADED_RUNS": "0"])
        #expect(fromFlags.maxLoadedRuns == 2 && fromFlags.onDemandKeepAlive == .seconds(600))

        for (flags, key) in [
            (DaemonConfiguration.Flags(onDemandKeepAlive: "soon"), "on_demand_keep_alive"),
            (DaemonConfiguration.Flags(onDemandTimeout: "0"), "on_demand_timeout"),
            (DaemonConfiguration.Flags(maxLoadedRuns: "-1"), "max_loaded_runs"),
        ] {
            let error = try await #require(throws: ConfigurationError.self) {
                try await DaemonConfiguration.resolve(flags: flags, environment: ["HOME": "/home/u"])
            }
            #expect(error.key == key)
        }
    }

    @Test("connection limits: defaults, a config file with numbers, the environment, flags; bad values name their key")
    func connectionLimits() async throws {
        let plain = try await DaemonConfiguration.resolve(flags: .init(), environment: ["HOME": "/home/u"])
        #expect(plain.maxBodySize == 32 << 20 && plain.maxConnections == 4096)
        #expect(plain.idleTimeout == .seconds(60) && plain.headerTimeout == .seconds(30) && plain.bodyTimeout == .seconds(60))

        let directory = try TemporaryDirectory()
        let file = directory.path("config.json")
        try Data(#"{"max_body_size": 1048576, "max_connections": 100, "idle_timeout": 5, "header_timeout": "10s", "body_timeout": "2m"}"#.utf8)
            .write(to: URL(filePath: file))
        let fromFile = try await DaemonConfiguration.resolve(flags: .init(config: file), environment: ["HOME": "/home/u"])
        #expect(fromFile.maxBodySize == 1 << 20 && fromFile.maxConnections == 100)
        #expect(fromFile.idleTimeout == .seconds(5) && fromFile.headerTimeout == .seconds(10) && fromFile.bodyTimeout == .seconds(120))

        let fromEnvironment = try await DaemonConfiguration.resolve(
            flags: .init(config: file), environment: ["HOME": "/home/u", "MODELD_MAX_BODY_SIZE": "64M", "MODELD_IDLE_TIMEOUT": "1m"])
        #expect(fromEnvironment.maxBodySize == 64 << 20 && fromEnvironment.idleTimeout == .seconds(60))

        let fromFlags = try await DaemonConfiguration.resolve(
            flags: .init(config: file, maxBodySize: "512K", bodyTimeout: "2s"), environment: ["HOME": "/home/u", "MODELD_MAX_BODY_SIZE": "64M"])
        #expect(fromFlags.maxBodySize == 512 << 10 && fromFlags.bodyTimeout == .seconds(2))

        for (flags, key) in [
            (DaemonConfiguration.Flags(maxBodySize: "0"), "max_body_size"),
            (DaemonConfiguration.Flags(maxBodySize: "lots"), "max_body_size"),
            (DaemonConfiguration.Flags(maxBodySize: "99999999999G"), "max_body_size"),
            (DaemonConfiguration.Flags(maxConnections: "0"), "max_connections"),
            (DaemonConfiguration.Flags(idleTimeout: "never"), "idle_timeout"),
            (DaemonConfiguration.Flags(headerTimeout: "0s"), "header_timeout"),
            (DaemonConfiguration.Flags(bodyTimeout: "soon"), "body_timeout"),
        ] {
            let error = try await #require(throws: ConfigurationError.self) {
                try await DaemonConfiguration.resolve(flags: flags, environment: ["HOME": "/home/u"])
            }
            #expect(error.key == key)
        }
    }

    @Test("otlp_endpoint: off by default; flag, MODELD_OTLP_ENDPOINT, config key, then OpenTelemetry's variables; bad URLs name their key")
    func otlpEndpoint() async throws {
        let home = ["HOME": "/home/u"]
        #expect(try await DaemonConfiguration.resolve(flags: .init(), environment: home).tracing == nil)
        let directory = try TemporaryDirectory()
        let file = directory.path("tracing.json")
        try Data(#"{"otlp_endpoint": "http://file:4318/"}"#.utf8).write(to: URL(filePath: file))
        let fromFile = try await DaemonConfiguration.resolve(flags: .init(config: file), environment: home)
        #expect(fromFile.tracing == TracingSettings(tracesURL: "http://file:4318/v1/traces", source: "otlp_endpoint", serviceName: "modeld"))

        // The setting wins over OpenTelemetry's variables; its own variable over the file; the flag over both.
        let otel = home.merging([
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "OTEL_SERVICE_NAME": "gateway-a", "MODELD_OTLP_ENDPOINT": "https://env:4318/v1/traces",
        ]) { $1 }
        let fromEnvironment = try await DaemonConfiguration.resolve(flags: .init(config: file), environment: otel)
        #expect(
            fromEnvironment.tracing == TracingSettings(tracesURL: "https://env:4318/v1/traces", source: "otlp_endpoint", serviceName: "gateway-a"))
        let fromFlag = try await DaemonConfiguration.resolve(flags: .init(config: file, otlpEndpoint: "http://[::1]:4318/otlp"), environment: otel)
        #expect(fromFlag.tracing?.tracesURL == "http://[::1]:4318/otlp/v1/traces")

        // Without the setting: the traces variable as it is, else the base variable with /v1/traces.
        var variables = otel
        variables["MODELD_OTLP_ENDPOINT"] = nil
        #expect(try await DaemonConfiguration.resolve(flags: .init(), environment: variables).tracing?.source == "OTEL_EXPORTER_OTLP_ENDPOINT")
        #expect(try await DaemonConfiguration.resolve(flags: .init(), environment: variables).tracing?.tracesURL == "http://otel:4318/v1/traces")
        variables["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://traces:4318/custom"
        #expect(
            try await DaemonConfiguration.resolve(flags: .init(), environment: variables).tracing
                == TracingSettings(tracesURL: "http://traces:4318/custom", source: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", serviceName: "gateway-a"))
        variables["OTEL_SDK_DISABLED"] = "true"
        #expect(try await DaemonConfiguration.resolve(flags: .init(otlpEndpoint: "http://a:4318"), environment: variables).tracing == nil)

        for (endpoint, problem) in [
            ("collector:4318", "not an http or https URL"), ("grpc://collector:4317", "not an http or https URL"),
            ("http://:4318", "not an http or https URL"), ("http://user:secret@collector:4318", "must not hold credentials"),
        ] {
            let error = try await #require(throws: ConfigurationError.self) {
                try await DaemonConfiguration.resolve(flags: .init(otlpEndpoint: endpoint), environment: home)
            }
            #expect(error.key == "otlp_endpoint" && error.problem.contains(problem))
            #expect(!error.description.contains("secret"))
        }
        let error = try await #require(throws: ConfigurationError.self) {
            try await DaemonConfiguration.resolve(flags: .init(), environment: home.merging(["OTEL_EXPORTER_OTLP_ENDPOINT": "localhost"]) { $1 })
        }
        #expect(error.key == "OTEL_EXPORTER_OTLP_ENDPOINT")
    }
}
