import Foundation

/// Writes a download's bytes to its partial file and hashes them on a second thread.
///
/// The transfer thread only copies into large buffers (3 × 4 MiB per file); a sink thread writes each full buffer at
/// its offset and feeds it to the hash, so hashing (~1.7 GB/s with SHA extensions) runs beside the
/// transfer instead of after it. A bounded set of buffers applies back-pressure.
final class HashingWriter: @unchecked Sendable {
    private let condition = NSCondition()
    private var queue: [(buffer: UnsafeMutableRawBufferPointer, count: Int)] = []
    private var free: [UnsafeMutableRawBufferPointer]
    private var all: [UnsafeMutableRawBufferPointer]
    private var current: UnsafeMutableRawBufferPointer
    private var currentCount = 0
    private var closing = false
    private var sinkDone = false
    private var failure: (any Error)?
    private var hasher: ContentHasher
    private let fd: Int32
    private var offset: Int64
    private let bufferSize: Int

    /// - Parameters:
    ///   - fd: the partial file, open for writing.
    ///   - offset: where the next byte goes (the bytes before it are already hashed into `hasher`).
    init(fd: Int32, offset: Int64, hasher: ContentHasher, bufferSize: Int = 4 << 20, buffers: Int = 3) {
        self.fd = fd
        self.offset = offset
        self.hasher = hasher
        self.bufferSize = bufferSize
        all = (0..<buffers).map { _ in UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64) }
        free = all
        current = free.removeLast()
        let thread = Thread { [self] in sinkLoop() }
        thread.name = "modeld.hash"
        thread.stackSize = 1 << 20
        thread.start()
    }

    deinit {
        for buffer in all { buffer.deallocate() }
    }

    /// Copies bytes in; blocks while every buffer waits for the sink.
    /// - Returns: false once writing failed (the error comes from ``finish()``).
    func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var remaining = bytes
        while !remaining.isEmpty {
            let room = bufferSize - currentCount
            let take = min(room, remaining.count)
            UnsafeMutableRawBufferPointer(rebasing: current[currentCount..<(currentCount + take)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: remaining[0..<take]))
            currentCount += take
            remaining = UnsafeRawBufferPointer(rebasing: remaining[take...])
            if currentCount == bufferSize {
                if !submitCurrent(waitForFree: true) { return false }
            }
        }
        return true
    }

    /// Flushes what is buffered, stops the sink thread and hands back the hash state.
    /// - Returns: the hasher over every byte now in the file, and the file's length.
    /// - Throws: the first write error (for example ENOSPC).
    func finish() throws -> (hasher: ContentHasher, length: Int64) {
        if currentCount > 0 { _ = submitCurrent(waitForFree: false) }
        condition.lock()
        closing = true
        condition.broadcast()
        while !sinkDone { condition.wait() }
        let failure = self.failure
        let result = (hasher, offset)
        condition.unlock()
        if let failure { throw failure }
        return result
    }

    private func submitCurrent(waitForFree: Bool) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard failure == nil else { return false }
        queue.append((current, currentCount))
        condition.broadcast()
        currentCount = 0
        guard waitForFree else { return true }
        while free.isEmpty && failure == nil { condition.wait() }
        if let next = free.popLast() { current = next }
        return failure == nil
    }

    private func sinkLoop() {
        while true {
            condition.lock()
            while queue.isEmpty && !closing { condition.wait() }
            if queue.isEmpty {
                sinkDone = true
                condition.broadcast()
                condition.unlock()
                return
            }
            let item = queue.removeFirst()
            let failed = failure != nil
            condition.unlock()

            var error: (any Error)?
            if !failed {
                let bytes = UnsafeRawBufferPointer(rebasing: item.buffer[0..<item.count])
                var done = 0
                while done < bytes.count {
                    let wrote = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + Int64(done)))
                    if wrote < 0 {
                        if errno == EINTR { continue }
                        error = POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                        break
                    }
                    done += wrote
                }
                if error == nil {
                    hasher.update(bytes)
                }
            }

            condition.lock()
            if let error, failure == nil { failure = error }
            if error == nil && !failed { offset += Int64(item.count) }
            free.append(item.buffer)
            condition.broadcast()
            condition.unlock()
        }
    }
}
