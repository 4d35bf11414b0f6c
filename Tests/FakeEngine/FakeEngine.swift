import Foundation

/// A stand-in for vLLM, SGLang, Ollama and modeld's built-in engine, driven by the same command lines
/// (docs/design/engine-launch.md), with misbehaviour on demand through `FAKE_ENGINE_*` variables:
///
/// | variable | effect |
/// |---|---|
/// | `FAKE_ENGINE_RECORD` | write argv, environment, open fds, signal masks and ids to this JSON file at start |
/// | `FAKE_ENGINE_STARTS` | append `<pid>` to this file at each start |
/// | `FAKE_ENGINE_CRASH_AFTER` | exit 3 after this many seconds |
/// | `FAKE_ENGINE_START_DELAY` | `/health` is 503 for this many seconds |
/// | `FAKE_ENGINE_HANG_HEALTH` | `/health` never answers (`=1`), or only after this many seconds (`=after:S`) |
/// | `FAKE_ENGINE_IGNORE_SIGTERM` | ignore SIGTERM |
/// | `FAKE_ENGINE_STOP_DELAY` | take this many seconds to shut down after SIGTERM, as a server finishing its requests |
/// | `FAKE_ENGINE_GRANDCHILD_PIDFILE` | spawn a helper (same process group, ignores SIGTERM) writing its pid here |
/// | `FAKE_ENGINE_LOG_BYTES` | print this many bytes of log lines at start |
/// | `FAKE_ENGINE_NO_MODULE` | exit 1 at once with Python's "No module named <value>" |
/// | `FAKE_ENGINE_REQUEST_LOG` | append the body of each `/v1/chat/completions` request to this file, one line each |
/// | `FAKE_ENGINE_HOLD_UNTIL_LOGGED` | hold each reply that is not streamed until the request log has this many lines (at most 30 s) |
/// | `FAKE_ENGINE_TRACE_LOG` | append the `traceparent` header of each `/v1/chat/completions` request (`-` if none) to this file |
///
/// As vLLM's worker of a multi-node run (`serve DIR ... --node-rank R --master-addr A ... --headless`) it serves nothing
/// and runs until stopped. As vLLM or SGLang it answers `/v1/chat/completions` (not streamed) like an engine with structured output:
/// with `response_format` `json_schema` the reply is a JSON instance of the schema (see ``SchemaInstance``).
/// `fake-engine supervise DATA PIDFILE` is a throw-away daemon instead: it starts one engine (this program
/// as vLLM) through the real ``Supervisor``, writes the engine's pid, and waits to be killed.
/// How long a SIGTERM takes to end the process (`FAKE_ENGINE_STOP_DELAY`); set once before the handler is installed.
nonisolated(unsafe) var stopDelay: timespec?

@main
struct FakeEngine {
    static func main() async throws {
        // First, before anything else opens a descriptor: what did we inherit?
        let descriptors = openDescriptors()
        let arguments = CommandLine.arguments
        if arguments.count >= 3, arguments[1] == "grandchild" {
            runGrandchild(pidFile: arguments[2])
        }
        if arguments.count >= 4, arguments[1] == "supervise" {
            try await SuperviseMode.run(dataDirectory: arguments[2], pidFile: arguments[3])
            return
        }
        let environment = ProcessInfo.processInfo.environment
        if let module = environment["FAKE_ENGINE_NO_MODULE"] {
            // What `python3 -m sglang.launch_server` prints when SGLang is not installed.
            FileHandle.standardError.write(Data("/usr/bin/python3: No module named \(module)\n".utf8))
            exit(1)
        }
        if let unknown = arguments.first(where: { $0.hasPrefix("--unknown-") }) {
            // What Python's argparse (vLLM, SGLang) prints, with its exit status, for a flag it does not know.
            FileHandle.standardError.write(Data("fake-engine: error: unrecognized arguments: \(unknown)\n".utf8))
            exit(2)
        }
        guard let role = FakeRole(arguments: arguments, environment: environment) else {
            FileHandle.standardError.write(Data("fake-engine: cannot tell which engine to be from \(arguments)\n".utf8))
            exit(2)
        }
        if let path = environment["FAKE_ENGINE_RECORD"] {
            writeRecord(to: path, arguments: arguments, environment: environment, descriptors: descriptors)
        }
        if let path = environment["FAKE_ENGINE_STARTS"] {
            appendLine("\(getpid())", to: path)
        }
        if environment["FAKE_ENGINE_IGNORE_SIGTERM"] == "1" {
            signal(SIGTERM, SIG_IGN)
        } else {
            // Like a real server: log the signal and exit cleanly (after its shutdown delay).
            stopDelay = environment["FAKE_ENGINE_STOP_DELAY"].flatMap(Double.init).map { delay in
                timespec(tv_sec: Int(delay), tv_nsec: Int((delay - delay.rounded(.down)) * 1e9))
            }
            signal(SIGTERM) { _ in
                let message = "fake-engine: SIGTERM received, shutting down\n"
                _ = message.withCString { write(2, $0, strlen($0)) }
                if var request = stopDelay {
                    // nanosleep is async-signal-safe; the server threads keep answering meanwhile.
                    var remaining = timespec()
                    while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
                }
                _exit(0)
            }
        }
        if let path = environment["FAKE_ENGINE_GRANDCHILD_PIDFILE"] {
            spawnGrandchild(pidFile: path)
        }
        if let bytes = environment["FAKE_ENGINE_LOG_BYTES"].flatMap(Int.init) {
            let line = String(repeating: "x", count: 99) + "\n"
            var written = 0
            while written < bytes {
                FileHandle.standardOutput.write(Data(line.utf8))
                written += line.utf8.count
            }
        }
        if let crash = environment["FAKE_ENGINE_CRASH_AFTER"].flatMap(Double.init) {
            Thread.detachNewThread {
                Thread.sleep(forTimeInterval: crash)
                print("fake-engine: crashing on purpose after \(crash) s (exit 3)")
                fflush(nil)
                exit(3)
            }
        }
        if role.headless {
            // A multi-node worker answers nothing: it runs until it is told to stop.
            print("fake-engine: vllm headless worker, no HTTP port")
            fflush(nil)
            while true { pause() }
        }
        let behaviour = FakeBehaviour(environment: environment, startedAt: Date())
        let server = try FakeHTTPServer(port: role.port, role: role, behaviour: behaviour)
        print("fake-engine: \(role.kind) serving \(role.servedName ?? "ollama") on 127.0.0.1:\(role.port)")
        fflush(nil)
        server.serveForever()
    }

    /// A helper in our own process group, as engines' worker processes are (Foundation's Process would
    /// give it a group of its own).
    static func spawnGrandchild(pidFile: String) {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/proc/self/exe"
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(me), strdup("grandchild"), strdup(pidFile), nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, me, nil, nil, argv, environ)
        if result != 0 {
            FileHandle.standardError.write(Data("fake-engine: cannot spawn the grandchild: \(String(cString: strerror(result)))\n".utf8))
        }
    }

    static func runGrandchild(pidFile: String) -> Never {
        signal(SIGTERM, SIG_IGN)
        let temporary = pidFile + ".tmp"
        FileManager.default.createFile(atPath: temporary, contents: Data("\(getpid())\n".utf8))
        rename(temporary, pidFile)
        while true { sleep(60) }
    }

    /// The descriptors open in this process, minus the one used to list them.
    static func openDescriptors() -> [Int32] {
        guard let directory = opendir("/proc/self/fd") else { return [] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var result: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if let fd = Int32(name), fd != own { result.append(fd) }
        }
        return result.sorted()
    }

    static func writeRecord(to path: String, arguments: [String], environment: [String: String], descriptors: [Int32]) {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        func field(_ name: String) -> String {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map { $0.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces) }
                ?? ""
        }
        let record: [String: Any] = [
            "argv": arguments,
            "env": environment,
            "fds": descriptors.map { Int($0) },
            "sig_ign": field("SigIgn"),
            "sig_blk": field("SigBlk"),
            "pid": Int(getpid()),
            "ppid": Int(getppid()),
            "pgid": Int(getpgrp()),
            "sid": Int(getsid(0)),
            "cwd": FileManager.default.currentDirectoryPath,
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]) else { return }
        let temporary = path + ".tmp.\(getpid())"
        FileManager.default.createFile(atPath: temporary, contents: data)
        rename(temporary, path)
    }

    /// Returns once the file at `path` holds at least `count` lines, or after `timeout` seconds.
    static func waitForLines(_ count: Int, in path: String, timeout: Double) {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let lines = (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n").count ?? 0
            if lines >= count { return }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    static func appendLine(_ line: String, to path: String) {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return }
        _ = (line + "\n").withCString { write(descriptor, $0, strlen($0)) }
        close(descriptor)
    }
}
