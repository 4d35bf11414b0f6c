import Configuration
import Foundation
import ModelStore
import ModeldAPI
import SystemPackage

/// A `HOST:PORT` pair to listen on; IPv6 hosts are written in brackets (`[::1]:8700`).
package struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    package var host: String
    package var port: Int

    package init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// - Throws: ``ConfigurationError`` when the text is not `HOST:PORT` with a port in 0...65535.
    package init(parsing text: String, key: String = "listen") throws {
        let invalid = ConfigurationError(key: key, problem: "\"\(text)\" is not HOST:PORT (for example 127.0.0.1:8700)")
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { throw invalid }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { throw invalid }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { throw invalid }
        self.host = String(host)
        self.port = port
    }

    package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Whether only this machine can reach the address.
    package var isLoopback: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// A configuration value that is present but unusable.
package struct ConfigurationError: Error, CustomStringConvertible {
    package var key: String
    package var problem: String

    package init(key: String, problem: String) {
        self.key = key
        self.problem = problem
    }

    package var description: String { "configuration \(key): \(problem)" }
}

/// The daemon's settings, resolved with the precedence flags > environment > config file > defaults.
///
/// | key | flag | environment | default |
/// |---|---|---|---|
/// | `listen` | `--listen` | `MODELD_LISTEN` | `127.0.0.1:8700` |
/// | `ollama_listen` | `--ollama-listen` | `MODELD_OLLAMA_LISTEN` | none (Ollama's API on `listen` only) |
/// | `data_dir` | `--data-dir` | `MODELD_DATA_DIR` | `$STATE_DIRECTORY`, `$XDG_DATA_HOME/modeld`, `~/.local/share/modeld` |
/// | `catalog` | `--catalog` | `MODELD_CATALOG` | the built-in catalog |
/// | `control_socket` | `--control-socket` | `MODELD_CONTROL_SOCKET` | `$RUNTIME_DIRECTORY/modeld.sock`, else `<data>/modeld.sock` |
/// | `max_download_rate` | `--max-download-rate` | `MODELD_MAX_DOWNLOAD_RATE` | unlimited |
/// | `on_demand_keep_alive` | `--on-demand-keep-alive` | `MODELD_ON_DEMAND_KEEP_ALIVE` | `5m` |
/// | `on_demand_timeout` | `--on-demand-timeout` | `MODELD_ON_DEMAND_TIMEOUT` | `5m` |
/// | `max_loaded_runs` | `--max-loaded-runs` | `MODELD_MAX_LOADED_RUNS` | `3` (0: no limit) |
/// | `ca_bundle` | `--ca-bundle` | `MODELD_CA_BUNDLE` | `CURL_CA_BUNDLE`, `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, else libcurl's default |
/// | `cors_origins` | `--cors-origin` (repeated) | `MODELD_CORS_ORIGINS` (comma-separated) | none |
/// | `allowed_hosts` | `--allowed-host` (repeated) | `MODELD_ALLOWED_HOSTS` (comma-separated) | none |
/// | `max_body_size` | `--max-body-size` | `MODELD_MAX_BODY_SIZE` | `32M` (archive imports excepted) |
/// | `max_connections` | `--max-connections` | `MODELD_MAX_CONNECTIONS` | `4096` per listener |
/// | `idle_timeout` | `--idle-timeout` | `MODELD_IDLE_TIMEOUT` | `60s` |
/// | `header_timeout` | `--header-timeout` | `MODELD_HEADER_TIMEOUT` | `30s` |
/// | `body_timeout` | `--body-timeout` | `MODELD_BODY_TIMEOUT` | `60s` |
/// | `routing_strategy` | | `MODELD_ROUTING_STRATEGY` | `local-first` |
/// | `max_failovers` | | `MODELD_MAX_FAILOVERS` | `2` |
/// | `cooldown_failures` | | `MODELD_COOLDOWN_FAILURES` | `3` (within `cooldown_window`) |
/// | `cooldown_window` | | `MODELD_COOLDOWN_WINDOW` | `60s` |
/// | `cooldown` | | `MODELD_COOLDOWN` | `30s` (between probes of a cooled upstream) |
/// | `discovery_interval` | | `MODELD_DISCOVERY_INTERVAL` | `5m` |
/// | `usage_retention` | `--usage-retention` | `MODELD_USAGE_RETENTION` | `30d` |
/// | `tls_cert` | `--tls-cert` | `MODELD_TLS_CERT` | none (plain HTTP) |
/// | `tls_key` | `--tls-key` | `MODELD_TLS_KEY` | none |
/// | `default_model` | `--default-model` | `MODELD_DEFAULT_MODEL` | none (requests must name their model) |
/// | `otlp_endpoint` | `--otlp-endpoint` | `MODELD_OTLP_ENDPOINT` | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, else none (tracing off) |
/// | (the file itself) | `--config` | `MODELD_CONFIG` | `/etc/modeld/config.json` when it exists |
package struct DaemonConfiguration: Sendable {
    package static let defaultListen = ListenAddress(host: "127.0.0.1", port: 8700)
    package static let defaultConfigFile = "/etc/modeld/config.json"

    package var listen: ListenAddress
    /// A second address serving Ollama's API alone (docs/ollama-api.md), such as Ollama's own `127.0.0.1:11434`.
    package var ollamaListen: ListenAddress?
    package var dataDirectory: DataDirectory
    /// A catalog file; nil means the built-in catalog.
    package var catalogPath: String?
    /// The config file that was read, if any.
    package var configFile: String?
    /// The unix control socket (trusted for administration, mode 0660).
    package var controlSocket: String
    /// A cap on pull bandwidth in bytes per second; nil means unlimited.
    package var maxDownloadRate: Int64?
    /// How long a run the gateway started on demand stays loaded without requests.
    package var onDemandKeepAlive: KeepAlive = .seconds(300)
    /// How long a request waits for an on-demand start to become ready.
    package var onDemandTimeout: Duration = .seconds(300)
    /// The most runs loaded at once before idle on-demand runs are unloaded; 0 means no limit.
    package var maxLoadedRuns = 3
    /// A PEM file of CA certificates that verifies the hubs (a mirror behind a private CA); nil means libcurl's
    /// default bundle.
    package var caBundle: String?
    /// What chose `caBundle`: `ca_bundle` (the setting) or the environment variable that named it.
    package var caBundleSource: String?

    /// The environment variables that name a CA bundle when the `ca_bundle` setting does not, the first set one
    /// winning: curl's, OpenSSL's, then the one huggingface_hub (through requests) reads.
    package static let caBundleVariables = ["CURL_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"]
    /// Web origins (`scheme://host[:port]`, lowercase) whose pages may call the API; `*` allows any.
    package var corsOrigins: [String] = []
    /// Host names, besides the daemon's own, that requests may name in `Host` while no API key exists.
    package var allowedHosts: [String] = []
    /// The largest request body in bytes (archive imports excepted: their route bounds them).
    package var maxBodySize = 32 << 20
    /// The most connections one listener keeps open; more wait to be accepted.
    package var maxConnections = 4096
    /// How long a connection may stay open with no request in progress.
    package var idleTimeout: Duration = .seconds(60)
    /// How long a request's head may take to arrive once its first byte has.
    package var headerTimeout: Duration = .seconds(30)
    /// The longest pause between two reads of a request's body.
    package var bodyTimeout: Duration = .seconds(60)
    /// How the gateway chooses among backends and fails over (docs/gateway.md).
    var routing = BackendRouter.Settings()
    /// How long usage is kept one row per request before it is summed per day (``UsageLedger``).
    package var usageRetention: Duration = .seconds(30 * 86400)
    /// The certificate chain (PEM) the TCP listeners serve HTTPS with; nil serves plain HTTP. Set with ``tlsKey``.
    package var tlsCert: String?
    /// The private key (PEM) of ``tlsCert``.
    package var tlsKey: String?
    /// The model of gateway requests that name none, and of the earlier services' routes (docs/older-api.md).
    package var defaultModel: String?
    /// Where spans go, OTLP over HTTP (docs/tracing.md); nil means tracing is off.
    package var tracing: TracingSettings?

    package init(
        listen: ListenAddress, dataDirectory: DataDirectory, catalogPath: String? = nil, configFile: String? = nil,
        controlSocket: String? = nil
    ) {
        self.listen = listen
        self.dataDirectory = dataDirectory
        self.catalogPath = catalogPath
        self.configFile = configFile
        self.controlSocket = controlSocket ?? dataDirectory.root.appending(path: "modeld.sock").path
    }

    /// Values given on the command line; nil means "not given".
    package struct Flags: Sendable {
        package var listen: String?
        package var ollamaListen: String?
        package var dataDir: String?
        package var catalog: String?
        package var config: String?
        package var controlSocket: String?
        package var maxDownloadRate: String?
        package var onDemandKeepAlive: String?
        package var onDemandTimeout: String?
        package var maxLoadedRuns: String?
        package var caBundle: String?
        /// Empty means "not given".
        package var corsOrigins: [String]
        package var allowedHosts: [String]
        package var maxBodySize: String?
        package var maxConnections: String?
        package var idleTimeout: String?
        package var headerTimeout: String?
        package var bodyTimeout: String?
        package var usageRetention: String?
        package var tlsCert: String?
        package var tlsKey: String?
        package var defaultModel: String?
        package var otlpEndpoint: String?

        package init(
            listen: String? = nil, dataDir: String? = nil, catalog: String? = nil, config: String? = nil,
            controlSocket: String? = nil, maxDownloadRate: String? = nil, onDemandKeepAlive: String? = nil,
            onDemandTimeout: String? = nil, maxLoadedRuns: String? = nil, caBundle: String? = nil, corsOrigins: [String] = [],
            allowedHosts: [String] = [], maxBodySize: String? = nil, maxConnections: String? = nil, idleTimeout: String? = nil,
            headerTimeout: String? = nil, bodyTimeout: String? = nil, ollamaListen: String? = nil, usageRetention: String? = nil,
            tlsCert: String? = nil, tlsKey: String? = nil, defaultModel: String? = nil, otlpEndpoint: String? = nil
        ) {
            self.usageRetention = usageRetention
            self.otlpEndpoint = otlpEndpoint
            self.defaultModel = defaultModel
            self.ollamaListen = ollamaListen
            self.tlsCert = tlsCert
            self.tlsKey = tlsKey
            self.caBundle = caBundle
            self.corsOrigins = corsOrigins
            self.allowedHosts = allowedHosts
            self.maxBodySize = maxBodySize
            self.maxConnections = maxConnections
            self.idleTimeout = idleTimeout
            self.headerTimeout = headerTimeout
            self.bodyTimeout = bodyTimeout
            self.onDemandKeepAlive = onDemandKeepAlive
            self.onDemandTimeout = onDemandTimeout
            self.maxLoadedRuns = maxLoadedRuns
            self.maxDownloadRate = maxDownloadRate
            self.listen = listen
            self.dataDir = dataDir
            self.catalog = catalog
            self.config = config
            self.controlSocket = controlSocket
        }
    }

    /// Resolves the configuration.
    /// - Parameters:
    ///   - flags: command-line values, which win over everything.
    ///   - environment: the process environment (`MODELD_*`, `STATE_DIRECTORY`, `XDG_DATA_HOME`, `HOME`).
    /// - Throws: ``ConfigurationError`` for an unreadable config file or an invalid value.
    package static func resolve(flags: Flags, environment: [String: String]) async throws -> DaemonConfiguration {
        var flagValues: [AbsoluteConfigKey: ConfigValue] = [:]
        if let value = flags.listen { flagValues["listen"] = .init(.string(value), isSecret: false) }
        if let value = flags.ollamaListen { flagValues["ollama_listen"] = .init(.string(value), isSecret: false) }
        if let value = flags.dataDir { flagValues["data_dir"] = .init(.string(value), isSecret: false) }
        if let value = flags.catalog { flagValues["catalog"] = .init(.string(value), isSecret: false) }
        if let value = flags.maxDownloadRate { flagValues["max_download_rate"] = .init(.string(value), isSecret: false) }
        if let value = flags.controlSocket { flagValues["control_socket"] = .init(.string(value), isSecret: false) }
        if let value = flags.onDemandKeepAlive { flagValues["on_demand_keep_alive"] = .init(.string(value), isSecret: false) }
        if let value = flags.onDemandTimeout { flagValues["on_demand_timeout"] = .init(.string(value), isSecret: false) }
        if let value = flags.maxLoadedRuns { flagValues["max_loaded_runs"] = .init(.string(value), isSecret: false) }
        if let value = flags.caBundle { flagValues["ca_bundle"] = .init(.string(value), isSecret: false) }
        if !flags.corsOrigins.isEmpty { flagValues["cors_origins"] = .init(.stringArray(flags.corsOrigins), isSecret: false) }
        if !flags.allowedHosts.isEmpty { flagValues["allowed_hosts"] = .init(.stringArray(flags.allowedHosts), isSecret: false) }
        if let value = flags.maxBodySize { flagValues["max_body_size"] = .init(.string(value), isSecret: false) }
        if let value = flags.maxConnections { flagValues["max_connections"] = .init(.string(value), isSecret: false) }
        if let value = flags.idleTimeout { flagValues["idle_timeout"] = .init(.string(value), isSecret: false) }
        if let value = flags.headerTimeout { flagValues["header_timeout"] = .init(.string(value), isSecret: false) }
        if let value = flags.bodyTimeout { flagValues["body_timeout"] = .init(.string(value), isSecret: false) }
        if let value = flags.usageRetention { flagValues["usage_retention"] = .init(.string(value), isSecret: false) }
        if let value = flags.tlsCert { flagValues["tls_cert"] = .init(.string(value), isSecret: false) }
        if let value = flags.tlsKey { flagValues["tls_key"] = .init(.string(value), isSecret: false) }
        if let value = flags.defaultModel { flagValues["default_model"] = .init(.string(value), isSecret: false) }
        if let value = flags.otlpEndpoint { flagValues["otlp_endpoint"] = .init(.string(value), isSecret: false) }

        let environmentProvider = EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: "modeld")
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: flagValues),
            environmentProvider,
        ]

        let explicitFile = flags.config ?? environment["MODELD_CONFIG"]
        let configFile = explicitFile ?? (FileManager.default.fileExists(atPath: defaultConfigFile) ? defaultConfigFile : nil)
        if let configFile {
            guard FileManager.default.isReadableFile(atPath: configFile) else {
                throw ConfigurationError(key: "config", problem: "file \(configFile) does not exist or cannot be read")
            }
            do {
                providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(configFile)))
            } catch {
                throw ConfigurationError(key: "config", problem: "file \(configFile) is not valid JSON: \(error)")
            }
        }
        providers.append(InMemoryProvider(name: "defaults", values: ["listen": .init(.string(defaultListen.description), isSecret: false)]))

        let reader = ConfigReader(providers: providers)
        let listenText = try reader.requiredString(forKey: "listen")
        let listen = try ListenAddress(parsing: listenText)

        let dataDirectory: DataDirectory
        if let path = reader.string(forKey: "data_dir"), !path.isEmpty {
            dataDirectory = DataDirectory(root: absoluteURL(path, environment: environment))
        } else {
            dataDirectory = DataDirectory(root: DataDirectory.defaultRoot(environment: environment))
        }
        let catalog = reader.string(forKey: "catalog").flatMap { $0.isEmpty ? nil : absoluteURL($0, environment: environment).path }
        let controlSocket: String? =
            if let path = reader.string(forKey: "control_socket"), !path.isEmpty {
                absoluteURL(path, environment: environment).path
            } else if let runtime = environment["RUNTIME_DIRECTORY"]?.split(separator: ":").first, !runtime.isEmpty {
                "\(runtime)/modeld.sock"
            } else {
                nil
            }
        var configuration = DaemonConfiguration(
            listen: listen, dataDirectory: dataDirectory, catalogPath: catalog, configFile: configFile,
            controlSocket: controlSocket)
        if let text = reader.string(forKey: "ollama_listen"), !text.isEmpty {
            configuration.ollamaListen = try ListenAddress(parsing: text, key: "ollama_listen")
        }
        if let rate = reader.string(forKey: "max_download_rate"), !rate.isEmpty {
            configuration.maxDownloadRate = try parseRate(rate)
        }
        if let text = reader.string(forKey: "on_demand_keep_alive") ?? reader.int(forKey: "on_demand_keep_alive").map(String.init), !text.isEmpty {
            guard let keepAlive = KeepAlive(parsing: text) else {
                throw ConfigurationError(key: "on_demand_keep_alive", problem: "\"\(text)\" is not a duration such as 30s, 5m, 1h or never")
            }
            configuration.onDemandKeepAlive = keepAlive
        }
        if let timeout = try positiveDuration(reader, key: "on_demand_timeout") { configuration.onDemandTimeout = timeout }
        if let timeout = try positiveDuration(reader, key: "idle_timeout") { configuration.idleTimeout = timeout }
        if let timeout = try positiveDuration(reader, key: "header_timeout") { configuration.headerTimeout = timeout }
        if let timeout = try positiveDuration(reader, key: "body_timeout") { configuration.bodyTimeout = timeout }
        if let text = reader.string(forKey: "usage_retention") ?? reader.int(forKey: "usage_retention").map(String.init), !text.isEmpty {
            // Days (`30d`), or a duration as the other settings take one (`720h`).
            if text.hasSuffix("d"), let days = Int(text.dropLast()), days > 0, days <= 36500 {
                configuration.usageRetention = .seconds(days * 86400)
            } else if let seconds = KeepAlive(parsing: text)?.seconds, seconds > 0 {
                configuration.usageRetention = .seconds(seconds)
            } else {
                throw ConfigurationError(key: "usage_retention", problem: "\"\(text)\" is not a positive duration such as 30d or 720h")
            }
        }
        if let text = reader.string(forKey: "max_body_size") ?? reader.int(forKey: "max_body_size").map(String.init), !text.isEmpty {
            configuration.maxBodySize = try parseSize(text, key: "max_body_size")
        }
        if let text = reader.string(forKey: "max_connections") ?? reader.int(forKey: "max_connections").map(String.init), !text.isEmpty {
            guard let count = Int(text), count > 0 else {
                throw ConfigurationError(key: "max_connections", problem: "\"\(text)\" is not a positive whole number")
            }
            configuration.maxConnections = count
        }
        if let text = reader.string(forKey: "max_loaded_runs") ?? reader.int(forKey: "max_loaded_runs").map(String.init), !text.isEmpty {
            guard let count = Int(text), count >= 0 else {
                throw ConfigurationError(key: "max_loaded_runs", problem: "\"\(text)\" is not a whole number (0 for no limit)")
            }
            configuration.maxLoadedRuns = count
        }
        if let (path, source) = chooseCABundle(setting: reader.string(forKey: "ca_bundle"), environment: environment) {
            let absolute = absoluteURL(path, environment: environment).path
            guard let contents = FileManager.default.contents(atPath: absolute) else {
                throw ConfigurationError(key: source, problem: "file \(absolute) does not exist or cannot be read")
            }
            guard contents.range(of: Data("CERTIFICATE-----".utf8)) != nil else {
                throw ConfigurationError(key: source, problem: "file \(absolute) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
            }
            configuration.caBundle = absolute
            configuration.caBundleSource = source
        }
        configuration.routing = try routing(reader)
        if let model = reader.string(forKey: "default_model")?.trimmingCharacters(in: .whitespaces), !model.isEmpty {
            configuration.defaultModel = model
        }
        configuration.corsOrigins = try list(reader, "cors_origins").map { try parseOrigin($0) }
        configuration.allowedHosts = try list(reader, "allowed_hosts").map { host in
            let name = host.lowercased()
            guard !name.contains("/"), !name.contains(" "), !name.hasPrefix("*") || name.count > 2 else {
                throw ConfigurationError(key: "allowed_hosts", problem: "\"\(host)\" is not a host name (such as models.example.com)")
            }
            return name
        }
        (configuration.tlsCert, configuration.tlsKey) = try tlsFiles(reader, environment: environment)
        configuration.tracing = try TracingSettings(setting: reader.string(forKey: "otlp_endpoint"), environment: environment)
        return configuration
    }

    /// The routing settings (docs/gateway.md, Settings).
    private static func routing(_ reader: ConfigReader) throws -> BackendRouter.Settings {
        var settings = BackendRouter.Settings()
        if let text = reader.string(forKey: "routing_strategy"), !text.isEmpty {
            guard let strategy = RoutingStrategy(rawValue: text) else {
                throw ConfigurationError(
                    key: "routing_strategy", problem: "\"\(text)\" is not one of \(RoutingStrategy.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            settings.strategy = strategy
        }
        for (key, path) in [("max_failovers", \BackendRouter.Settings.maxFailovers), ("cooldown_failures", \.failuresToCool)] {
            guard let text = reader.string(forKey: ConfigKey(key)) ?? reader.int(forKey: ConfigKey(key)).map(String.init), !text.isEmpty else {
                continue
            }
            guard let count = Int(text), count >= (key == "max_failovers" ? 0 : 1) else {
                throw ConfigurationError(key: key, problem: "\"\(text)\" is not a whole number\(key == "max_failovers" ? "" : " of at least 1")")
            }
            settings[keyPath: path] = count
        }
        if let window = try positiveDuration(reader, key: "cooldown_window") { settings.failureWindow = window }
        if let cooldown = try positiveDuration(reader, key: "cooldown") { settings.cooldown = cooldown }
        if let interval = try positiveDuration(reader, key: "discovery_interval") { settings.discoveryInterval = interval }
        return settings
    }

    /// The `tls_cert` and `tls_key` files, absolute: both or neither, each readable. Whether they hold PEM that
    /// fits together is checked when the daemon loads them (``ServerTLS``).
    private static func tlsFiles(_ reader: ConfigReader, environment: [String: String]) throws -> (String?, String?) {
        let paths = ["tls_cert", "tls_key"].map { key in
            reader.string(forKey: ConfigKey(key)).flatMap { $0.isEmpty ? nil : absoluteURL($0, environment: environment).path }
        }
        switch (paths[0], paths[1]) {
        case (nil, nil):
            return (nil, nil)
        case (let cert?, let key?):
            for (setting, path) in [("tls_cert", cert), ("tls_key", key)] where FileManager.default.contents(atPath: path) == nil {
                throw ConfigurationError(key: setting, problem: "file \(path) does not exist or cannot be read")
            }
            return (cert, key)
        case (nil, _):
            throw ConfigurationError(key: "tls_cert", problem: "is not set but tls_key is: HTTPS needs the certificate and its key")
        case (_, nil):
            throw ConfigurationError(key: "tls_key", problem: "is not set but tls_cert is: HTTPS needs the certificate and its key")
        }
    }

    /// The CA bundle to use and what named it: the `ca_bundle` setting, else the first of
    /// ``caBundleVariables`` that is set.
    private static func chooseCABundle(setting: String?, environment: [String: String]) -> (path: String, source: String)? {
        if let setting, !setting.isEmpty { return (setting, "ca_bundle") }
        for name in caBundleVariables {
            if let path = environment[name], !path.isEmpty { return (path, name) }
        }
        return nil
    }

    /// A list setting: an array in the config file and the flags, comma-separated in the environment.
    private static func list(_ reader: ConfigReader, _ key: String) -> [String] {
        let values = reader.stringArray(forKey: ConfigKey(key)) ?? reader.string(forKey: ConfigKey(key)).map { [$0] } ?? []
        return values.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// An origin as browsers send it: `scheme://host[:port]`, lowercased, or `*`.
    static func parseOrigin(_ text: String) throws -> String {
        var origin = text.lowercased()
        if origin.hasSuffix("/") { origin.removeLast() }
        if origin == "*" { return origin }
        guard let separator = origin.range(of: "://"), ["http", "https"].contains(origin[..<separator.lowerBound]),
            !origin[separator.upperBound...].isEmpty, !origin[separator.upperBound...].contains("/")
        else {
            throw ConfigurationError(
                key: "cors_origins", problem: "\"\(text)\" is not an origin such as https://app.example.com or http://localhost:3000 (or *)")
        }
        return origin
    }

    /// A positive duration (`90s`, `5m`, or seconds) under `key`, nil when not set.
    private static func positiveDuration(_ reader: ConfigReader, key: String) throws -> Duration? {
        guard let text = reader.string(forKey: ConfigKey(key)) ?? reader.int(forKey: ConfigKey(key)).map(String.init), !text.isEmpty else {
            return nil
        }
        guard let seconds = KeepAlive(parsing: text)?.seconds, seconds > 0 else {
            throw ConfigurationError(key: key, problem: "\"\(text)\" is not a positive duration such as 90s or 5m")
        }
        return .seconds(seconds)
    }

    /// `32M`, `512K`, `1G` (binary multiples: `32M` is 32 MiB) or plain bytes.
    static func parseSize(_ text: String, key: String) throws -> Int {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        var number = text.trimmingCharacters(in: .whitespaces).uppercased()
        if number.hasSuffix("IB") { number.removeLast(2) } else if number.hasSuffix("B") { number.removeLast() }
        var factor = 1
        if let last = number.last, let unit = units[last] {
            factor = unit
            number.removeLast()
        }
        guard let value = Int(number), value > 0, value <= Int.max / factor else {
            throw ConfigurationError(key: key, problem: "\"\(text)\" is not a size such as 32M or 512K")
        }
        return value * factor
    }

    /// `50M`, `1.5G`, `800K` or plain bytes per second.
    static func parseRate(_ text: String) throws -> Int64 {
        let units: [Character: Double] = ["K": 1e3, "M": 1e6, "G": 1e9]
        var number = text.trimmingCharacters(in: .whitespaces).uppercased()
        if number.hasSuffix("B") || number.hasSuffix("/S") {
            number = String(number.replacingOccurrences(of: "/S", with: "").dropLast(number.hasSuffix("B") ? 1 : 0))
        }
        var factor = 1.0
        if let last = number.last, let unit = units[last] {
            factor = unit
            number.removeLast()
        }
        guard let value = Double(number), value > 0 else {
            throw ConfigurationError(key: "max_download_rate", problem: "\"\(text)\" is not a rate such as 50M (bytes per second)")
        }
        return Int64(value * factor)
    }

    /// Expands `~` and makes relative paths absolute against the working directory.
    private static func absoluteURL(_ path: String, environment: [String: String]) -> URL {
        var expanded = path
        if expanded == "~" || expanded.hasPrefix("~/"), let home = environment["HOME"] {
            expanded = home + expanded.dropFirst()
        }
        if expanded.hasPrefix("/") { return URL(filePath: expanded, directoryHint: .isDirectory) }
        return URL(filePath: FileManager.default.currentDirectoryPath, directoryHint: .isDirectory)
            .appending(path: expanded, directoryHint: .isDirectory)
    }
}
