import ModelStore

/// The supervisor's working state for one run; owned and mutated by the ``Supervisor`` actor only.
final class ManagedRun {
    var record: RunRecord
    /// nil when the stored options could not be read (the run cannot be started again).
    var spec: LaunchSpec?
    let log: RunLog
    /// The engine process of the current attempt, until it has been stopped and reaped.
    var process: EngineProcess?
    /// The task that starts, probes and restarts the engine.
    var monitor: Task<Void, Never>?
    /// When the engine was restarted, within the burst window.
    var restartTimes: [ContinuousClock.Instant] = []
    /// Failures since the engine last served for a while; drives the backoff.
    var consecutiveFailures = 0

    init(record: RunRecord, spec: LaunchSpec?, log: RunLog) {
        self.record = record
        self.spec = spec
        self.log = log
    }

    var engine: EngineKind { EngineKind(rawValue: record.engine) ?? .builtin }

    var info: RunInfo {
        RunInfo(record: record, servedName: spec?.servedName ?? record.model, modelPath: spec?.modelPath, gpus: spec?.options.gpus)
    }
}
