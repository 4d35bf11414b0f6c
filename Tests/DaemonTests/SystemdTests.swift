import Foundation
import Launchers
import ModeldAPI
import ModeldClient
import Testing

/// A unix datagram socket bound to an abstract name, standing in for systemd's notification socket.
final class NotifyReceiver: @unchecked Sendable {
    let name: String
    private let fd: Int32

    init() throws {
        name = "modeld-test-\(UUID().uuidString.prefix(8))"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = [UInt8(0)] + Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count)
        let result = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EINVAL) }
    }

    deinit { close(fd) }

    /// Collects datagrams until one contains `line` (a whole line) or the deadline passes.
    func wait(for line: String, timeout: Duration = .seconds(20)) async -> [String] {
        (try? await blocking { self.waitBlocking(for: line, timeout: timeout) }) ?? []
    }

    private func waitBlocking(for line: String, timeout: Duration) -> [String] {
        var seen: [String] = []
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var pollDescriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollDescriptor, 1, 100) > 0 else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            guard count > 0 else { continue }
            let message = String(decoding: buffer[..<count], as: UTF8.self)
            seen.append(message)
            if message.split(separator: "\n").contains(where: { $0 == line }) { return seen }
        }
        return seen
    }
}

@Suite("systemd integration", .serialized)
struct SystemdTests {
    static let socketActivate = "/usr/bin/systemd-socket-activate"

    @Test(
        "under systemd-socket-activate: started by the first connection, answers on TCP and unix, notifies, stops on SIGTERM",
        .enabled(if: FileManager.default.isExecutableFile(atPath: socketActivate)))
    func socketActivation() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-sa-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let port = try freeLoopbackPort()
        let socketPath = root.appending(path: "control.sock").path
        let notify = try NotifyReceiver()

        // Not Foundation's `Process`: systemd-socket-activate closes the descriptors it does not pass on, and
        // Foundation takes the close of its per-child socket for the child's exit and then blocks its one
        // process-monitoring thread in `waitpid` until this process really ends, holding up every other test's
        // `Process` meanwhile. The supervisor's spawner and a reaper for this pid alone do not.
        let logPath = root.appending(path: "output.log").path
        let logDescriptor = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(logDescriptor >= 0)
        let arguments = [
            "-l", "127.0.0.1:\(port)", "-l", socketPath, "--fdname=http:control",
            "-E", "NOTIFY_SOCKET=@\(notify.name)", "-E", "WATCHDOG_USEC=500000", "-E", "MODELD_DATA_DIR=\(root.path)",
            productsDirectory.appending(path: "modeld").path,
        ]
        let pid = try await Spawner.shared.spawn(
            LaunchCommand(
                executablePath: Self.socketActivate, arguments: [Self.socketActivate] + arguments,
                environment: ProcessInfo.processInfo.environment),
            outputDescriptor: logDescriptor)
        close(logDescriptor)
        let process = EngineProcess(childPid: pid)
        defer { if process.exitStatus == nil { kill(pid, SIGKILL) } }

        // systemd-socket-activate binds first and execs the daemon only on the first connection.
        var listening = false
        for _ in 0..<100 where !listening {
            listening = FileManager.default.fileExists(atPath: socketPath)
            if !listening { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(listening)
        let early = await notify.wait(for: "READY=1", timeout: .milliseconds(300))
        #expect(early.isEmpty, "the daemon must not start before a connection")

        let tcp = try ModeldClient(endpoint: DaemonEndpoint(baseURL: "http://127.0.0.1:\(port)"))
        #expect(try await tcp.health().status == "ok")
        let unix = try ModeldClient(endpoint: DaemonEndpoint(baseURL: "http://localhost", unixSocketPath: socketPath))
        #expect(try await unix.models().contains { $0.id == "qwen2.5" })

        let startup = await notify.wait(for: "WATCHDOG=1")
        var all = startup
        if !startup.contains(where: { $0.contains("READY=1") }) { all += await notify.wait(for: "READY=1") }
        #expect(all.contains { $0.split(separator: "\n").contains("READY=1") }, "got \(all)")
        #expect(all.contains { $0.contains("STATUS=") })
        // The status line summarises runs and pulls.
        let statusLine = "STATUS=runs: 0 ready, 0 starting, 0 failed; pulls in progress: 0"
        let status = all.contains(statusLine) ? all : all + (await notify.wait(for: statusLine, timeout: .seconds(10)))
        #expect(status.contains(statusLine), "got \(status)")
        #expect(all.contains("WATCHDOG=1"))

        // The daemon is exec'd in place: the process we started is the daemon now.
        let clock = ContinuousClock()
        let stopStarted = clock.now
        kill(pid, SIGTERM)
        let stopping = await notify.wait(for: "STOPPING=1")
        #expect(stopping.contains { $0.split(separator: "\n").contains("STOPPING=1") }, "got \(stopping)")
        let exit = await process.waitForExit(timeout: .seconds(25))
        #expect(clock.now - stopStarted < .seconds(25))
        #expect(exit == .exited(0), "\(String(describing: exit))")
        let output = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(output.contains("socket-activated"), "\(output)")
        #expect(output.contains("modeld stopped"))
    }

    @Test("a service manager that does not read its notification socket never holds up requests")
    func unreadNotifications() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-nr-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let notify = try NotifyReceiver()
        // A watchdog ping every 50 ms fills the socket's queue (ten datagrams) within a second: sd_notify then blocks.
        let launch = try await ModeldLaunch(
            arguments: ["--data-dir", root.path],
            environment: ["HOME": root.path, "RUNTIME_DIRECTORY": root.path, "NOTIFY_SOCKET": "@\(notify.name)", "WATCHDOG_USEC": "100000"])
        let daemon = launch.process
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) } }
        try await Task.sleep(for: .seconds(2))
        // Each on a connection of its own, so they land on every event loop.
        var slow: [String] = []
        for _ in 0..<12 {
            let reply = try await runProcess(
                URL(filePath: "/usr/bin/curl"), ["-s", "--max-time", "5", "http://127.0.0.1:\(launch.port)/health"])
            if !reply.stdout.contains("\"ok\"") { slow.append("exit \(reply.status): \(reply.stdout)") }
        }
        #expect(slow.isEmpty, "requests held up while the notification socket was full: \(slow)\n\(launch.log)")
        // Read now: the queued notifications arrive, and stopping still sends STOPPING=1.
        #expect(await notify.wait(for: "READY=1").contains { $0.split(separator: "\n").contains("READY=1") })
        kill(daemon.processIdentifier, SIGTERM)
        let stopping = await notify.wait(for: "STOPPING=1")
        #expect(stopping.contains { $0.split(separator: "\n").contains("STOPPING=1") }, "got \(stopping)")
        try await waitForExit(daemon)
        #expect(daemon.terminationReason == .exit && daemon.terminationStatus == 0)
    }

    @Test("without activation: the control socket is created with mode 0660, a stale one is replaced, a live one refused")
    func ownControlSocket() async throws {
        let root = FileManager.default.temporaryDirectory.appending(path: "modeld-cs-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        let socketPath = root.appending(path: "modeld.sock").path
        // A stale socket file left by a crashed daemon.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(socketPath.utf8) + [0]) }
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        close(stale)
        #expect(FileManager.default.fileExists(atPath: socketPath))

        let daemon = try await ModeldLaunch(arguments: ["--data-dir", root.path], environment: ["HOME": root.path, "RUNTIME_DIRECTORY": root.path])
            .process
        defer { if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) } }

        let client = try ModeldClient(endpoint: DaemonEndpoint(baseURL: "http://localhost", unixSocketPath: socketPath))
        var answered = false
        for _ in 0..<100 where !answered {
            answered = (try? await client.health())?.status == "ok"
            if !answered { try await Task.sleep(for: .milliseconds(100)) }
        }
        #expect(answered)
        let attributes = try FileManager.default.attributesOfItem(atPath: socketPath)
        #expect((attributes[.posixPermissions] as? Int) == 0o660)

        // A second daemon on the same control socket is refused with a clear message.
        let second = try await runProcess(
            productsDirectory.appending(path: "modeld"),
            ["--data-dir", root.appending(path: "other").path, "--listen", "127.0.0.1:0", "--control-socket", socketPath],
            environment: ["HOME": root.path])
        #expect(second.status == 1)
        #expect(second.stderr.contains("cannot listen on \(socketPath): another modeld is already listening there"))

        kill(daemon.processIdentifier, SIGTERM)
        try await waitForExit(daemon)
        #expect(daemon.terminationStatus == 0)
    }

    @Test(
        "systemd-analyze verify accepts the unit files without a word",
        .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze")))
    func unitFilesVerify() async throws {
        let source = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../systemd").standardized
        let staging = FileManager.default.temporaryDirectory.appending(path: "modeld-units-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: staging) }
        let units = ["modeld.socket", "modeld-control.socket", "modeld-ollama.socket", "modeld.service"]
        for unit in units {
            let text = try String(contentsOf: source.appending(path: unit), encoding: .utf8)
            #expect(text.contains("/usr/local/bin/modeld") || unit != "modeld.service")
            let pointed = text.replacingOccurrences(of: "/usr/local/bin/modeld", with: productsDirectory.appending(path: "modeld").path)
            try pointed.write(to: staging.appending(path: unit), atomically: true, encoding: .utf8)
        }
        let process = Process()
        process.executableURL = URL(filePath: "/usr/bin/systemd-analyze")
        process.arguments = ["verify", "--man=no"] + units.map { staging.appending(path: $0).path }
        process.currentDirectoryURL = staging
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        try await waitForExit(process)
        let stderr = String(decoding: (try? err.fileHandleForReading.readToEnd()) ?? Data(), as: UTF8.self)
        #expect(stderr.isEmpty, "systemd-analyze: \(stderr)")
        #expect(process.terminationStatus == 0)

        let service = try String(contentsOf: source.appending(path: "modeld.service"), encoding: .utf8)
        for line in ["Type=notify", "NotifyAccess=main", "KillMode=mixed", "Restart=on-failure", "StateDirectory=modeld", "RuntimeDirectory=modeld"] {
            #expect(service.contains("\n\(line)\n"), "modeld.service lacks \(line)")
        }
        #expect(!service.contains("PrivateDevices=yes") && !service.contains("MemoryDenyWriteExecute=yes"))
        let control = try String(contentsOf: source.appending(path: "modeld-control.socket"), encoding: .utf8)
        #expect(control.contains("FileDescriptorName=control") && control.contains("SocketMode=0660"))
        let ollama = try String(contentsOf: source.appending(path: "modeld-ollama.socket"), encoding: .utf8)
        #expect(ollama.contains("FileDescriptorName=ollama") && ollama.contains("ListenStream=127.0.0.1:11434"))
    }
}
