import CSpawn
import Foundation
import Synchronization

/// The one long-lived thread that forks every engine (docs/design/supervision.md, Spawning).
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits, so engines must never be forked
/// from Swift's pooled threads or a short-lived helper thread. This thread is started once per process and
/// never ends; requests reach it through a queue guarded by a condition variable.
package final class Spawner: @unchecked Sendable {
    /// The process-wide spawner.
    package static let shared = Spawner()

    private struct Job {
        var command: LaunchCommand
        var outputDescriptor: Int32
        var directory: String?
        var completion: @Sendable (cspawn_result) -> Void
    }

    private let condition = NSCondition()
    private var queue: [Job] = []
    private var started = false

    private init() {}

    /// Forks and executes `command` with `outputDescriptor` on stdout and stderr.
    /// - Returns: the child's pid (its session and process-group id).
    /// - Throws: ``LaunchError`` when fork, the child's set-up or `execve` fails.
    package func spawn(_ command: LaunchCommand, outputDescriptor: Int32, directory: String? = nil) async throws -> pid_t {
        let result: cspawn_result = await withCheckedContinuation { continuation in
            enqueue(
                Job(command: command, outputDescriptor: outputDescriptor, directory: directory) { result in
                    continuation.resume(returning: result)
                })
        }
        guard result.error == 0, result.pid > 0 else {
            let reason = String(cString: strerror(result.error))
            throw LaunchError(
                code: .spawnFailed,
                message: "cannot start \(command.executablePath): \(Self.stageName(result.stage)) failed (\(reason))")
        }
        return result.pid
    }

    private func enqueue(_ job: Job) {
        condition.lock()
        queue.append(job)
        if !started {
            started = true
            let thread = Thread { [self] in loop() }
            thread.name = "modeld-spawner"
            thread.stackSize = 1 << 20
            thread.start()
        }
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let job = queue.removeFirst()
            condition.unlock()
            job.completion(Self.run(job))
        }
    }

    /// Prepares C strings (the child may not allocate) and forks.
    private static func run(_ job: Job) -> cspawn_result {
        let argv = job.command.arguments.map { strdup($0) } + [nil]
        let envp = job.command.environmentStrings.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        return job.command.executablePath.withCString { path in
            if let directory = job.directory {
                return directory.withCString { directory in
                    cspawn_spawn(path, argv, envp, job.outputDescriptor, directory)
                }
            }
            return cspawn_spawn(path, argv, envp, job.outputDescriptor, nil)
        }
    }

    static func stageName(_ stage: Int32) -> String {
        switch UInt32(stage) {
        case CSPAWN_STAGE_PIPE.rawValue: "creating the status pipe"
        case CSPAWN_STAGE_FORK.rawValue: "fork"
        case CSPAWN_STAGE_PDEATHSIG.rawValue: "prctl(PR_SET_PDEATHSIG)"
        case CSPAWN_STAGE_PARENT_GONE.rawValue: "the parent check"
        case CSPAWN_STAGE_SETSID.rawValue: "setsid"
        case CSPAWN_STAGE_SIGNALS.rawValue: "resetting signals"
        case CSPAWN_STAGE_DEVNULL.rawValue: "opening /dev/null"
        case CSPAWN_STAGE_DUP2.rawValue: "redirecting output"
        case CSPAWN_STAGE_CLOSE_FDS.rawValue: "closing inherited descriptors"
        case CSPAWN_STAGE_CHDIR.rawValue: "changing directory"
        case CSPAWN_STAGE_EXEC.rawValue: "execve"
        default: "step \(stage)"
        }
    }
}
