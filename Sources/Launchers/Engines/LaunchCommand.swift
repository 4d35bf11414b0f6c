/// A resolved command line: what the spawner executes.
package struct LaunchCommand: Sendable, Hashable {
    /// The file to `execve` (absolute).
    package var executablePath: String
    /// The whole argv, `argv[0]` included.
    package var arguments: [String]
    /// The complete environment of the engine.
    package var environment: [String: String]

    package init(executablePath: String, arguments: [String], environment: [String: String]) {
        self.executablePath = executablePath
        self.arguments = arguments
        self.environment = environment
    }

    /// `KEY=VALUE` strings, sorted, as `execve` wants them.
    package var environmentStrings: [String] {
        environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    }
}
