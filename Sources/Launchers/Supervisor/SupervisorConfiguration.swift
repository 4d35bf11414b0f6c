import Foundation

/// Every knob of the supervisor. Defaults suit production; tests shrink the timings.
package struct SupervisorConfiguration: Sendable {
    /// Per-engine executables, start time-outs and stop grace periods.
    package var engines: [EngineKind: EngineSettings]
    /// Loopback ports handed to engines.
    package var portRange: ClosedRange<Int>
    package var restart: RestartPolicy
    /// Time between readiness probes while an engine starts.
    package var readinessInterval: Duration
    /// Time between liveness probes once an engine is ready.
    package var livenessInterval: Duration
    /// Consecutive failed liveness probes that make the engine count as dead (it is then restarted).
    package var livenessFailureThreshold: Int
    /// How long one probe may take.
    package var probeTimeout: Duration
    /// How long a worker without an HTTP port (a multi-node run's worker, docs/multi-node.md) must run before it
    /// counts as ready: by then vLLM has parsed its arguments and checked its configuration.
    package var workerSettle: Duration
    /// Rotate a run's log before it grows past this many bytes.
    package var logMaxBytes: Int64
    /// Rotated log files kept per run (`<run>.log.1 ... .N`).
    package var logFilesKept: Int
    /// Log lines quoted in a failed run's reason.
    package var reasonLogLines: Int
    /// The environment engines start from; `NOTIFY_SOCKET`, `LISTEN_*` and `WATCHDOG_*` are always removed.
    package var baseEnvironment: [String: String]
    /// Settings of the shared `ollama serve`.
    package var ollama: OllamaContract
    /// Become the reaper of orphaned engine helpers (`PR_SET_CHILD_SUBREAPER`), so a stopped engine's
    /// grandchildren are reaped and its group truly disappears, whatever PID 1 does.
    package var childSubreaper: Bool
    /// Where the host's GPUs are read from, for placing runs that name none.
    package var gpuInventory: GPUInventory

    package init(
        engines: [EngineKind: EngineSettings] = [:],
        portRange: ClosedRange<Int> = 18100...18999,
        restart: RestartPolicy = RestartPolicy(),
        readinessInterval: Duration = .seconds(1),
        livenessInterval: Duration = .seconds(10),
        livenessFailureThreshold: Int = 3,
        probeTimeout: Duration = .seconds(5),
        workerSettle: Duration = .seconds(30),
        logMaxBytes: Int64 = 10 << 20,
        logFilesKept: Int = 3,
        reasonLogLines: Int = 20,
        baseEnvironment: [String: String] = ProcessInfo.processInfo.environment,
        ollama: OllamaContract = OllamaContract(),
        childSubreaper: Bool = true,
        gpuInventory: GPUInventory? = nil
    ) {
        self.gpuInventory = gpuInventory ?? GPUInventory(searchPath: baseEnvironment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")
        var all: [EngineKind: EngineSettings] = [:]
        for kind in EngineKind.allCases { all[kind] = engines[kind] ?? EngineSettings.defaults(for: kind) }
        self.engines = all
        self.portRange = portRange
        self.restart = restart
        self.readinessInterval = readinessInterval
        self.livenessInterval = livenessInterval
        self.livenessFailureThreshold = livenessFailureThreshold
        self.probeTimeout = probeTimeout
        self.workerSettle = workerSettle
        self.logMaxBytes = logMaxBytes
        self.logFilesKept = logFilesKept
        self.reasonLogLines = reasonLogLines
        self.baseEnvironment = baseEnvironment
        self.ollama = ollama
        self.childSubreaper = childSubreaper
    }

    /// The settings of one engine.
    package func settings(for kind: EngineKind) -> EngineSettings {
        engines[kind] ?? EngineSettings.defaults(for: kind)
    }
}
