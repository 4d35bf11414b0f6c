import Archives
import ArgumentParser
import Catalog
import Downloads
import Foundation
import Hummingbird
import Launchers
import Logging
import ModelStore
import ModeldAPI
import ServiceLifecycle
import Synchronization
import UnixSignals

/// `modeld serve` (the default): runs the daemon until SIGTERM or SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon (the default command).",
        discussion: """
            Settings come from flags, then MODELD_* environment variables, then the config file, then defaults.
            """)

    @Option(name: .long, help: "Address to listen on, HOST:PORT (env MODELD_LISTEN; default 127.0.0.1:8700).")
    var listen: String?

    @Option(
        name: .long, help: "A second address serving Ollama's API alone, HOST:PORT, such as 127.0.0.1:11434 (env MODELD_OLLAMA_LISTEN; default none)."
    )
    var ollamaListen: String?

    @Option(name: .long, help: "Data directory (env MODELD_DATA_DIR; default $STATE_DIRECTORY, else $XDG_DATA_HOME/modeld).")
    var dataDir: String?

    @Option(name: .long, help: "Model catalog JSON file (env MODELD_CATALOG; default: the built-in catalog).")
    var catalog: String?

    @Option(name: .long, help: "Config file, JSON (env MODELD_CONFIG; default /etc/modeld/config.json if present).")
    var config: String?

    @Option(
        name: .long,
        help:
            "Unix control socket, trusted for administration (env MODELD_CONTROL_SOCKET; default $RUNTIME_DIRECTORY/modeld.sock, else DATA/modeld.sock)."
    )
    var controlSocket: String?

    @Option(name: .long, help: "Limit pull bandwidth, bytes per second, with optional K/M/G suffix (env MODELD_MAX_DOWNLOAD_RATE).")
    var maxDownloadRate: String?

    @Option(
        name: .long,
        help:
            "How long a run started on demand by a request stays loaded without requests: 30s, 5m, 1h, or never (env MODELD_ON_DEMAND_KEEP_ALIVE; default 5m)."
    )
    var onDemandKeepAlive: String?

    @Option(name: .long, help: "How long a request waits for an on-demand start to become ready (env MODELD_ON_DEMAND_TIMEOUT; default 5m).")
    var onDemandTimeout: String?

    @Option(
        name: .long,
        help:
            "The most runs loaded at once; idle on-demand runs are unloaded, least recently used first, to make room (env MODELD_MAX_LOADED_RUNS; default 3; 0 for no limit)."
    )
    var maxLoadedRuns: String?

    @Option(
        name: .long,
        help:
            "CA certificates (PEM) to verify the hubs with, for a mirror behind a private CA (env MODELD_CA_BUNDLE; default $CURL_CA_BUNDLE, $SSL_CERT_FILE or $REQUESTS_CA_BUNDLE, else libcurl's default)."
    )
    var caBundle: String?

    @Option(
        name: .customLong("cors-origin"),
        help:
            "A web origin whose pages may call the API, such as https://app.example.com, or * for any; repeat for more (env MODELD_CORS_ORIGINS, comma-separated; default none)."
    )
    var corsOrigins: [String] = []

    @Option(
        name: .customLong("allowed-host"),
        help:
            "A host name requests may use besides the daemon's own (localhost, its addresses, the machine's name) while no API key exists; repeat for more (env MODELD_ALLOWED_HOSTS)."
    )
    var allowedHosts: [String] = []

    @Option(
        name: .long, help: "The largest request body, with optional K/M/G suffix; archive imports excepted (env MODELD_MAX_BODY_SIZE; default 32M).")
    var maxBodySize: String?

    @Option(name: .long, help: "The most connections a listener keeps open; more wait to be accepted (env MODELD_MAX_CONNECTIONS; default 4096).")
    var maxConnections: String?

    @Option(name: .long, help: "How long a connection with no request in progress stays open (env MODELD_IDLE_TIMEOUT; default 60s).")
    var idleTimeout: String?

    @Option(name: .long, help: "How long a request's line and headers may take to arrive (env MODELD_HEADER_TIMEOUT; default 30s).")
    var headerTimeout: String?

    @Option(name: .long, help: "The longest pause while a request body arrives (env MODELD_BODY_TIMEOUT; default 60s).")
    var bodyTimeout: String?

    @Option(
        name: .long,
        help: "How long usage is kept one row per request before it is summed per day: 30d, 720h (env MODELD_USAGE_RETENTION; default 30d).")
    var usageRetention: String?
    @Option(name: .long, help: "Serve HTTPS (and HTTP/2) with this PEM certificate chain; with --tls-key (env MODELD_TLS_CERT; default none).")
    var tlsCert: String?

    @Option(name: .long, help: "The PEM private key of --tls-cert (env MODELD_TLS_KEY). Both are read again on SIGHUP.")
    var tlsKey: String?

    @Option(name: .long, help: "The model of /v1 requests that name none, and of the earlier services' routes (env MODELD_DEFAULT_MODEL).")
    var defaultModel: String?

    @Option(
        name: .long,
        help:
            "Send traces to this OpenTelemetry collector, OTLP over HTTP, such as http://127.0.0.1:4318 (env MODELD_OTLP_ENDPOINT; default $OTEL_EXPORTER_OTLP_ENDPOINT, else off)."
    )
    var otlpEndpoint: String?

    @Flag(name: .long, help: "Allow a non-loopback --listen address with no API key: anyone who can reach it can pull, start and stop models.")
    var insecureNoAuth = false

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (env MODELD_LOG_LEVEL).")
    var logLevel: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let level = (logLevel ?? environment["MODELD_LOG_LEVEL"]).flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in DaemonLogHandler(label: label, logLevel: level) }
        let logger = Logger(label: "modeld")
        do {
            let daemon = try await DaemonStartup.prepare(
                flags: .init(
                    listen: listen, dataDir: dataDir, catalog: catalog, config: config, controlSocket: controlSocket,
                    maxDownloadRate: maxDownloadRate, onDemandKeepAlive: onDemandKeepAlive, onDemandTimeout: onDemandTimeout,
                    maxLoadedRuns: maxLoadedRuns, caBundle: caBundle, corsOrigins: corsOrigins, allowedHosts: allowedHosts,
                    maxBodySize: maxBodySize, maxConnections: maxConnections, idleTimeout: idleTimeout, headerTimeout: headerTimeout,
                    bodyTimeout: bodyTimeout, ollamaListen: ollamaListen, usageRetention: usageRetention, tlsCert: tlsCert, tlsKey: tlsKey,
                    defaultModel: defaultModel, otlpEndpoint: otlpEndpoint),
                environment: environment, logger: logger)
            // Security by default: an address other hosts can reach needs an API key (or --insecure-no-auth), with
            // HTTPS too: TLS hides the traffic, it does not say who may send it.
            let keysExist = try await daemon.store.hasActiveAPIKeys()
            let addresses: [(String, ListenAddress?)] = [
                ("listen", daemon.configuration.listen), ("ollama_listen", daemon.configuration.ollamaListen),
            ]
            for (key, address) in addresses {
                guard let address, !address.isLoopback, !insecureNoAuth, !keysExist else { continue }
                throw ConfigurationError(
                    key: key,
                    problem:
                        "\(address) is reachable from other hosts and no API key exists; start modeld on 127.0.0.1 and create one first (`modelctl keys create --name NAME --scope admin`), or pass --insecure-no-auth"
                )
            }
            try await DaemonStartup.run(daemon)
        } catch let error as CleanExit {
            throw error
        } catch {
            // One line a person can act on, then a non-zero exit.
            logger.critical("\(error)")
            throw ExitCode(1)
        }
    }
}

/// Start-up steps shared by `modeld serve` and the tests.
enum DaemonStartup {
    /// Resolves configuration, prepares the data directory, loads the catalog and migrates the store.
    /// - Throws: a one-sentence error for a malformed catalog, an unusable data directory or a newer store.
    /// - Parameter now: the usage ledger's clock (``UsageLedger/now``): tests move it to cross days and months.
    static func prepare(
        flags: DaemonConfiguration.Flags, environment: [String: String], logger: Logger, now: @escaping @Sendable () -> Date = { Date() }
    ) async throws -> DaemonContext {
        let configuration = try await DaemonConfiguration.resolve(flags: flags, environment: environment)
        try configuration.dataDirectory.prepare()
        let catalog: ModelCatalog
        if let path = configuration.catalogPath {
            catalog = try ModelCatalog.load(contentsOf: URL(filePath: path))
        } else {
            catalog = try ModelCatalog.builtIn()
        }
        let tls = try ServerTLS.load(configuration)
        let store = try Store(path: configuration.dataDirectory.database.path)
        if let bundle = configuration.caBundle {
            do {
                try EngineClient.shared.trust(caBundle: bundle)
            } catch {
                throw ConfigurationError(
                    key: configuration.caBundleSource ?? "ca_bundle", problem: "cannot read \(bundle) for TLS to upstreams: \(error)")
            }
        }
        let metrics = DaemonMetrics()
        var startMetadata: Logger.Metadata = [
            "listen": "\(configuration.listen)", "data_dir": "\(configuration.dataDirectory.root.path)",
            "catalog": "\(configuration.catalogPath ?? "built-in") (\(catalog.entries.count) models)",
        ]
        if let tls { startMetadata["tls_cert"] = "\(tls.certificatePath)" }
        if let bundle = configuration.caBundle {
            startMetadata["ca_bundle"] = "\(bundle) (from \(configuration.caBundleSource ?? "ca_bundle"))"
        }
        var tracing: (any Service)?
        if let settings = configuration.tracing {
            tracing = try DaemonTracing.bootstrap(settings, environment: environment, logger: logger)
            startMetadata["otlp_endpoint"] = "\(settings.tracesURL) (from \(settings.source))"
        }
        logger.info("modeld starting", metadata: startMetadata)
        let pulls = PullService(
            configuration: .fromEnvironment(
                dataDirectory: configuration.dataDirectory, environment: environment,
                maxDownloadRate: configuration.maxDownloadRate, caBundle: configuration.caBundle),
            store: store, metrics: metrics.factory)
        ArchiveService(pulls: pulls).removeAbandonedImports()
        let interrupted = try await store.markInterruptedPulls()
        if interrupted > 0 { logger.notice("marked \(interrupted) versions whose pull was interrupted as failed") }
        var supervisorLogger = logger
        supervisorLogger[metadataKey: "part"] = "supervisor"
        let supervisor = try await Supervisor(
            store: store, dataDirectory: configuration.dataDirectory,
            configuration: SupervisorConfiguration(
                engines: try engineSettings(environment), portRange: try enginePorts(environment), baseEnvironment: environment),
            logger: supervisorLogger, metrics: metrics.factory)
        var schedulerLogger = logger
        schedulerLogger[metadataKey: "part"] = "runs"
        let scheduler = RunScheduler(
            supervisor: supervisor, catalog: catalog, store: store, maxLoadedRuns: configuration.maxLoadedRuns,
            onDemandKeepAlive: configuration.onDemandKeepAlive, startTimeout: configuration.onDemandTimeout, logger: schedulerLogger)
        let events = EventBus()
        events.watchRuns(of: supervisor)
        var routerLogger = logger
        routerLogger[metadataKey: "part"] = "routing"
        let router = BackendRouter(
            settings: configuration.routing, scheduler: scheduler, store: store, metrics: metrics, logger: routerLogger, environment: environment,
            lister: { await UpstreamsController.list($0) })
        try await router.reload()
        var usageLogger = logger
        usageLogger[metadataKey: "part"] = "usage"
        let usage = UsageLedger(store: store, retention: configuration.usageRetention, logger: usageLogger, now: now)
        try await usage.seed()
        return DaemonContext(
            configuration: configuration, catalog: catalog, store: store, pulls: pulls, supervisor: supervisor, metrics: metrics,
            logger: logger, authorizer: Authorizer(store: store, usage: usage), scheduler: scheduler, router: router, events: events,
            pullEvents: PullEventSource(bus: events, pulls: pulls), usage: usage, tls: tls, tracing: tracing)
    }

    /// Engine executables from `MODELD_VLLM_COMMAND`, `MODELD_SGLANG_COMMAND`, `MODELD_OLLAMA_COMMAND` and
    /// `MODELD_BUILTIN_COMMAND` (a command line split on spaces), over the defaults.
    static func engineSettings(_ environment: [String: String]) throws -> [EngineKind: EngineSettings] {
        var engines: [EngineKind: EngineSettings] = [:]
        for kind in EngineKind.allCases {
            let key = "MODELD_\(kind.rawValue.uppercased())_COMMAND"
            guard let text = environment[key], !text.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            var settings = EngineSettings.defaults(for: kind)
            settings.command = text.split(separator: " ").map(String.init)
            engines[kind] = settings
        }
        return engines
    }

    /// The ports engines get, from `MODELD_ENGINE_PORTS` (`FIRST-LAST`), default 18100-18999.
    static func enginePorts(_ environment: [String: String]) throws -> ClosedRange<Int> {
        guard let text = environment["MODELD_ENGINE_PORTS"], !text.isEmpty else { return 18100...18999 }
        let parts = text.split(separator: "-").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard parts.count == 2, parts[0] >= 1024, parts[0] <= parts[1], parts[1] <= 65535 else {
            throw ConfigurationError(key: "engine_ports", problem: "\"\(text)\" is not a port range FIRST-LAST within 1024-65535")
        }
        return parts[0]...parts[1]
    }

    /// Runs the daemon until SIGTERM or SIGINT: serves HTTP on the TCP and control sockets (from systemd
    /// when socket-activated, else bound here), tells systemd when it is ready, pings the watchdog, and on
    /// shutdown stops accepting, finishes in-flight requests within a bound, and closes the store.
    static func run(_ daemon: DaemonContext) async throws {
        let notifier = SystemdNotifier()
        raiseOpenFileLimit(daemon)
        let group = await services(daemon, sockets: try listeningSockets(daemon), notifier: notifier, signals: [.sigterm, .sigint])
        try await group.run()
        try daemon.store.close()
        notifier.flush(timeout: .seconds(2))
        daemon.logger.info("modeld stopped")
    }

    /// Everything the daemon runs, as one service group: a listener on each socket (router, connection guard and
    /// the gateway's relay), the supervisor, the pulls, idle unload, the event heartbeat and systemd's status and
    /// watchdog. `modeld serve` runs it until a signal; the tests run the very same group (`TestDaemon.serve`).
    /// - Parameters:
    ///   - signals: the signals that begin a graceful shutdown.
    ///   - onReady: called once every listener accepts and the supervisor has reconciled the recorded runs.
    static func services(
        _ daemon: DaemonContext, sockets: [ListeningSocket], notifier: SystemdNotifier, signals: [UnixSignal],
        onReady: @escaping @Sendable () -> Void = {}
    ) async -> ServiceGroup {
        let readiness = daemon.readiness
        readiness.expect(listeners: sockets.count) {
            notifier.ready(status: "ready")
            daemon.logger.info("modeld ready")
            onReady()
        }
        let gateway = GatewayController(daemon: daemon)
        let ollama = OllamaController(daemon: daemon, gateway: gateway)
        let responder = buildRouter(daemon, gateway: gateway, ollama: ollama).buildResponder()
        let ollamaResponder = buildOllamaRouter(daemon, gateway: gateway, ollama: ollama).buildResponder()
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = sockets.map { socket in
            .init(
                service: HTTPListener(
                    socket: socket, responder: socket.servesOllama ? ollamaResponder : responder, logger: daemon.logger,
                    serverName: "modeld/\(modeldVersion)", daemon: daemon, ollama: ollama, onListening: { readiness.listening() }))
        }
        if let interval = notifier.watchdogInterval {
            services.append(.init(service: Watchdog(interval: interval, store: daemon.store, notifier: notifier, logger: daemon.logger)))
        }
        // Started first, stopped last: the supervisor reconciles before READY=1 and stops every engine after
        // the listeners have drained.
        services.insert(.init(service: PullRunner(pulls: daemon.pulls)), at: 0)
        let supervisor = SupervisorService(
            supervisor: daemon.supervisor, reconciled: { readiness.reconciled() },
            stopping: { runs, grace in
                notifier.extendTimeout(grace + .seconds(10))
                notifier.status("stopping \(runs) engine(s)")
            })
        services.insert(.init(service: supervisor), at: 0)
        // Stopped last: the usage of the requests the listeners drained is written before the store closes.
        services.insert(.init(service: UsageWriter(ledger: daemon.usage)), at: 0)
        // Stopped after everything else: the spans of the last requests and of the engines' stops are sent.
        if let tracing = daemon.tracing { services.insert(.init(service: tracing), at: 0) }
        // Its keep-alive timers stop when shutdown begins: no run is unloaded while the daemon stops.
        services.append(.init(service: daemon.scheduler))
        services.append(.init(service: UpstreamDiscovery(router: daemon.router)))
        services.append(.init(service: EventHeartbeat(bus: daemon.events)))
        services.append(.init(service: StatusReporter(daemon: daemon, notifier: notifier)))
        services.append(.init(service: StoppingNotifier(notifier: notifier, readiness: readiness)))
        services.append(.init(service: CertificateReloader(tls: daemon.tls, logger: daemon.logger)))
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: signals, logger: daemon.logger)
        // Listeners drain for at most HTTPListener.drainTime; engines get their own grace periods on top.
        let supervision = await daemon.supervisor.configuration
        let longestGrace = EngineKind.allCases.map { supervision.settings(for: $0).stopGrace }.max() ?? .seconds(10)
        configuration.maximumGracefulShutdownDuration = HTTPListener.drainTime + longestGrace + .seconds(15)
        configuration.maximumCancellationDuration = .seconds(5)
        return ServiceGroup(configuration: configuration)
    }

    /// Raises the soft limit on open files towards the hard one, up to 65536 as the systemd unit sets it (the
    /// kernel's default soft limit, 1024, is below what `max_connections` allows), and warns when even that leaves too few descriptors for the connections, the
    /// store, downloads and engines.
    static func raiseOpenFileLimit(_ daemon: DaemonContext) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = min(limit.rlim_max, 65536)
        if limit.rlim_cur < wanted {
            limit.rlim_cur = wanted
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let reserve: rlim_t = 256
        if limit.rlim_cur < rlim_t(daemon.configuration.maxConnections) + reserve {
            daemon.logger.warning(
                "the open-files limit is low for max_connections",
                metadata: ["limit": "\(limit.rlim_cur)", "max_connections": "\(daemon.configuration.maxConnections)"])
        }
    }

    /// The sockets to serve: systemd's `http`, `control` and `ollama` when activated, else our own (the Ollama
    /// listener when `ollama_listen` is set).
    static func listeningSockets(_ daemon: DaemonContext) throws -> [ListeningSocket] {
        let activated = ActivatedSockets.take()
        if !activated.byName.isEmpty {
            let sockets = activated.byName.sorted { $0.key < $1.key }.map { ListeningSocket.activated(fd: $0.value, name: $0.key) }
            daemon.logger.info("socket-activated", metadata: ["names": "\(activated.byName.keys.sorted().joined(separator: ","))"])
            return sockets
        }
        var sockets = [
            try ListeningSocket.tcp(daemon.configuration.listen),
            try ListeningSocket.unix(path: daemon.configuration.controlSocket),
        ]
        if let address = daemon.configuration.ollamaListen {
            var socket = try ListeningSocket.tcp(address)
            socket.servesOllama = true
            sockets.append(socket)
        }
        return sockets
    }

    /// The one-line status systemd shows (`systemctl status modeld`): runs and pulls.
    static func statusLine(_ daemon: DaemonContext) async -> String {
        let runs = daemon.supervisor.snapshot
        let ready = runs.filter { $0.state == .ready }.count
        let starting = runs.filter { $0.state == .starting }.count
        let failed = runs.filter { $0.state == .failed }.count
        let pulls = daemon.pulls.activeJobs().count
        return "runs: \(ready) ready, \(starting) starting, \(failed) failed; pulls in progress: \(pulls)"
    }
}

/// Keeps systemd's `STATUS=` line current, every few seconds while the daemon runs.
struct StatusReporter: Service, CustomStringConvertible {
    let daemon: DaemonContext
    let notifier: SystemdNotifier
    var description: String { "StatusReporter" }

    func run() async throws {
        // Ends at once when shutdown begins: the services after it in the shutdown order must not wait.
        try? await cancelWhenGracefulShutdown {
            var last = ""
            while !Task.isCancelled {
                let line = await DaemonStartup.statusLine(daemon)
                if line != last {
                    notifier.status(line)
                    last = line
                }
                try await Task.sleep(for: .seconds(5))
            }
        }
    }
}

/// Whether the daemon is ready to serve (`GET /readiness`, systemd's `READY=1`): every listener accepts and the
/// supervisor has reconciled the recorded runs with their desired states; not once shutdown has begun.
final class DaemonReadiness: Sendable {
    private struct State {
        /// How many listeners must accept; nil until the services are built.
        var listeners: Int?
        var listening = 0
        var reconciled = false
        var stopping = false
        var onReady: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    /// Sets how many listeners there are, and what to call once the daemon becomes ready.
    func expect(listeners: Int, onReady: @escaping @Sendable () -> Void) {
        state.withLock { state in
            state.listeners = listeners
            state.onReady = onReady
        }
    }

    /// A listener accepts.
    func listening() { update { $0.listening += 1 } }

    /// The supervisor has reconciled the recorded runs.
    func reconciled() { update { $0.reconciled = true } }

    /// Shutdown has begun.
    func stopping() { update { $0.stopping = true } }

    /// Why the daemon is not ready; nil when it is.
    var notReadyReason: String? {
        state.withLock { state in
            if state.stopping { return "the daemon is stopping" }
            guard let listeners = state.listeners else { return "the daemon is starting" }
            if state.listening < listeners { return "\(state.listening) of \(listeners) listeners accept connections" }
            if !state.reconciled { return "the recorded runs are being reconciled with their desired states" }
            return nil
        }
    }

    private func update(_ change: (inout State) -> Void) {
        let ready: (@Sendable () -> Void)? = state.withLock { state in
            change(&state)
            guard let listeners = state.listeners, state.listening >= listeners, state.reconciled, let onReady = state.onReady else { return nil }
            state.onReady = nil
            return onReady
        }
        ready?()
    }
}

/// Lists the models of upstreams with `discover` at start-up and every `discovery_interval`; at shutdown, stops
/// the probes of cooled upstreams.
struct UpstreamDiscovery: Service, CustomStringConvertible {
    let router: BackendRouter
    var description: String { "UpstreamDiscovery" }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await router.discover()
                try await Task.sleep(for: router.settings.discoveryInterval)
            }
        }
        router.shutdown()
    }
}

/// Runs the pull service's jobs; on shutdown, cancels them (their partial files stay for a resume).
struct PullRunner: Service, CustomStringConvertible {
    let pulls: PullService
    var description: String { pulls.description }

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            await pulls.run()
        }
    }
}
