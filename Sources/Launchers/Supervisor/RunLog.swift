import CSpawn
import Foundation
import Synchronization

/// A run's log: `<data>/logs/<run>.log`, rotated by size to `<run>.log.1 ... .N`, fed by the engine's
/// output pipe (read on a dedicated thread) and by the supervisor's own notes, with the last lines kept in
/// memory for failure reasons and live followers (docs/design/supervision.md, Logs).
package final class RunLog: Sendable {
    package let url: URL
    package let maxBytes: Int64
    package let keep: Int
    private let recentCapacity: Int

    private struct State {
        var descriptor: Int32 = -1
        var size: Int64 = 0
        var partial: [UInt8] = []
        var recent: [String] = []
        var followers: [Int: AsyncStream<String>.Continuation] = [:]
        var nextFollower = 0
        var openReaders = 0
    }

    private let state = Mutex(State())

    /// - Parameters:
    ///   - url: the current log file.
    ///   - maxBytes: rotate before the file would grow past this.
    ///   - keep: how many rotated files to keep.
    package init(url: URL, maxBytes: Int64, keep: Int, recentLines: Int = 200) {
        self.url = url
        self.maxBytes = max(1, maxBytes)
        self.keep = max(1, keep)
        self.recentCapacity = recentLines
    }

    deinit {
        state.withLock { state in
            if state.descriptor >= 0 { close(state.descriptor) }
            for follower in state.followers.values { follower.finish() }
        }
    }

    /// A pipe for an engine's stdout and stderr: the write end goes to the child, the read end is drained
    /// into this log by a dedicated thread until every writer has closed it.
    /// - Returns: the write end (close-on-exec; the parent closes it once the child has started).
    package func makePipe() throws -> Int32 {
        var descriptors: [Int32] = [-1, -1]
        let error = cspawn_pipe_cloexec(&descriptors)
        guard error == 0 else {
            throw LaunchError(code: .logs, message: "cannot create the output pipe for \(url.lastPathComponent): \(String(cString: strerror(error)))")
        }
        let readEnd = descriptors[0]
        state.withLock { $0.openReaders += 1 }
        let thread = Thread { [self] in drain(readEnd) }
        thread.name = "modeld-log"
        thread.stackSize = 256 << 10
        thread.start()
        return descriptors[1]
    }

    /// Whether every pipe handed out has reached end-of-file (all output of exited engines is in the log).
    package var isDrained: Bool { state.withLock { $0.openReaders == 0 } }

    /// Waits until the engine's output is all in (its writers are gone), at most `timeout`.
    package func waitUntilDrained(timeout: Duration) async {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !isDrained, clock.now < deadline { await pause(.milliseconds(10)) }
    }

    private func drain(_ descriptor: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            append(buffer[0..<count])
        }
        close(descriptor)
        state.withLock { state in
            state.openReaders -= 1
            if !state.partial.isEmpty {
                let line = String(decoding: state.partial, as: UTF8.self)
                state.partial = []
                remember(line, in: &state)
            }
        }
    }

    /// Adds a line of the supervisor's own (`[modeld] ...`), so the log tells the whole story.
    package func note(_ message: String) {
        let timestamp = Date().formatted(.iso8601)
        append(Array("[modeld \(timestamp)] \(message)\n".utf8)[...])
    }

    private func append(_ bytes: ArraySlice<UInt8>) {
        state.withLock { state in
            write(bytes, into: &state)
            state.partial.append(contentsOf: bytes)
            while let newline = state.partial.firstIndex(of: 0x0A) {
                let line = String(decoding: state.partial[..<newline], as: UTF8.self)
                state.partial.removeSubrange(...newline)
                remember(line, in: &state)
            }
            // A runaway line without newline is still shown, in pieces.
            if state.partial.count > 64 << 10 {
                remember(String(decoding: state.partial, as: UTF8.self), in: &state)
                state.partial = []
            }
        }
    }

    private func remember(_ line: String, in state: inout State) {
        state.recent.append(line)
        if state.recent.count > recentCapacity { state.recent.removeFirst(state.recent.count - recentCapacity) }
        for follower in state.followers.values { follower.yield(line) }
    }

    /// Writes to the current file, rotating at line boundaries so no file grows past ``maxBytes``.
    private func write(_ bytes: ArraySlice<UInt8>, into state: inout State) {
        var rest = bytes
        while !rest.isEmpty {
            if state.descriptor < 0 { openFile(&state) }
            guard state.descriptor >= 0 else { return }
            let room = max(0, maxBytes - state.size)
            if Int64(rest.count) <= room {
                writeRaw(rest, &state)
                return
            }
            let limit = rest.startIndex + Int(room)
            if room > 0, let newline = rest[rest.startIndex..<limit].lastIndex(of: 0x0A) {
                writeRaw(rest[...newline], &state)
                rest = rest[(newline + 1)...]
            } else if state.size == 0 {
                // One line longer than a whole file: cut it.
                writeRaw(rest.prefix(Int(maxBytes)), &state)
                rest = rest.dropFirst(Int(maxBytes))
            }
            rotate(&state)
        }
    }

    private func writeRaw(_ bytes: ArraySlice<UInt8>, _ state: inout State) {
        let descriptor = state.descriptor
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Foundation.write(descriptor, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
        state.size += Int64(bytes.count)
    }

    private func openFile(_ state: inout State) {
        let descriptor = open(url.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        state.descriptor = descriptor
        var info = stat()
        state.size = descriptor >= 0 && fstat(descriptor, &info) == 0 ? Int64(info.st_size) : 0
    }

    private func rotate(_ state: inout State) {
        if state.descriptor >= 0 { close(state.descriptor) }
        state.descriptor = -1
        let path = url.path
        unlink("\(path).\(keep)")
        for index in stride(from: keep - 1, through: 1, by: -1) {
            rename("\(path).\(index)", "\(path).\(index + 1)")
        }
        rename(path, "\(path).1")
        openFile(&state)
    }

    /// Closes the log file until the next write (a stopped run should not hold a descriptor).
    package func closeFile() {
        state.withLock { state in
            if state.descriptor >= 0 { close(state.descriptor) }
            state.descriptor = -1
        }
    }

    /// The last lines kept in memory (engine output and notes since this daemon started).
    package func recentLines(_ count: Int) -> [String] {
        state.withLock { Array($0.recent.suffix(count)) }
    }

    /// The last `count` lines on disk, reading rotated files as needed.
    package func tail(_ count: Int) -> [String] {
        var lines: [String] = []
        let path = url.path
        for file in [path] + (1...keep).map({ "\(path).\($0)" }) {
            guard lines.count < count, let data = FileManager.default.contents(atPath: file) else { break }
            var fileLines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if fileLines.last == "" { fileLines.removeLast() }
            lines = fileLines.suffix(count - lines.count) + lines
        }
        return lines
    }

    /// The last `tail` lines, then every new line as it is written, until the stream is dropped.
    package func follow(tail count: Int) -> AsyncStream<String> {
        let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(10_000))
        // Registration and the tail are read under the lock, so no line is lost or doubled in between.
        let id = state.withLock { state -> Int in
            for line in tail(count) { continuation.yield(line) }
            state.nextFollower += 1
            state.followers[state.nextFollower] = continuation
            return state.nextFollower
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.followers.removeValue(forKey: id) }
        }
        return stream
    }

    /// Ends every follower's stream (the run was removed or the daemon stops).
    package func finishFollowers() {
        let followers = state.withLock { state in
            defer { state.followers = [:] }
            return Array(state.followers.values)
        }
        for follower in followers { follower.finish() }
    }
}
