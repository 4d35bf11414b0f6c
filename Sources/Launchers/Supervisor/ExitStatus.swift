import Foundation

/// How an engine process ended, as `waitpid` reports it.
package enum ExitStatus: Sendable, Hashable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    init(waitStatus status: Int32) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot see.
        let signal = status & 0x7f
        if signal == 0 {
            self = .exited((status >> 8) & 0xff)
        } else {
            self = .signaled(signal)
        }
    }

    /// The shell's encoding: the exit code, or 128 + the signal number.
    package var code: Int {
        switch self {
        case .exited(let code): Int(code)
        case .signaled(let signal): 128 + Int(signal)
        }
    }

    package var description: String {
        switch self {
        case .exited(let code): return "exit status \(code)"
        case .signaled(let signal):
            if let name = strsignal(signal) { return "killed by signal \(signal) (\(String(cString: name)))" }
            return "killed by signal \(signal)"
        }
    }
}
