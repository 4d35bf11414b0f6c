/// When to restart an engine that died, like systemd: an exponentially growing delay up to a cap, and a
/// burst limit after which the run is `failed` (docs/design/supervision.md, Restart policy).
package struct RestartPolicy: Sendable, Hashable {
    /// The delay before the first restart; it doubles with each consecutive failure.
    package var backoffBase: Duration
    package var backoffCap: Duration
    /// At most this many restarts within ``burstWindow``; one more failure fails the run.
    package var burstLimit: Int
    package var burstWindow: Duration

    package init(
        backoffBase: Duration = .seconds(1), backoffCap: Duration = .seconds(60), burstLimit: Int = 5,
        burstWindow: Duration = .seconds(600)
    ) {
        self.backoffBase = backoffBase
        self.backoffCap = backoffCap
        self.burstLimit = burstLimit
        self.burstWindow = burstWindow
    }

    /// The delay before restart number `attempt` of a run of consecutive failures (1 = the first).
    package func delay(attempt: Int) -> Duration {
        var delay = backoffBase
        for _ in 1..<max(1, attempt) {
            delay = delay * 2
            if delay >= backoffCap { return backoffCap }
        }
        return min(delay, backoffCap)
    }
}
