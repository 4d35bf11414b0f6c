/// The one shared `ollama serve` child; owned by the ``Supervisor`` actor.
final class OllamaHost {
    let port: Int
    let log: RunLog
    var process: EngineProcess?
    var ready = false
    /// The start in progress, which concurrent Ollama runs wait for.
    var starting: Task<Void, any Error>?
    var monitor: Task<Void, Never>?
    var restartTimes: [ContinuousClock.Instant] = []
    var consecutiveFailures = 0

    init(port: Int, log: RunLog) {
        self.port = port
        self.log = log
    }
}
