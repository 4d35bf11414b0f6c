import CoreMetrics
import Foundation
import Hubs
import ModelStore
import Synchronization
import Transfer

extension FileFetcher {
    enum RangedOutcome {
        case complete
        /// The server answered a range with the whole file: download it as one stream instead.
        case unsupported
    }

    /// The side file holding a ranged download's progress.
    static func planURL(for partial: URL) -> URL {
        URL(filePath: partial.path + ".ranges")
    }

    /// Whether to fetch `item` as parallel ranges: a large file, and no single-stream partial file in the way.
    /// Under a rate cap a new download is one stream: ranges would not be faster, and each range request lets
    /// libcurl's limiter start with a burst (a ranged partial file from before is still resumed as ranges).
    func usesRanges(_ item: DownloadItem, partial: URL) -> Bool {
        guard settings.rangeParts > 1, item.size >= settings.rangeThreshold else { return false }
        let hasPlan = RangePlan.load(Self.planURL(for: partial), for: item) != nil
        if settings.maxReceiveRate != nil { return hasPlan }
        return hasPlan || !FileManager.default.fileExists(atPath: partial.path)
    }

    /// Downloads `item` as `settings.rangeParts` ranges at once into the partial file, then hashes the whole.
    /// - Throws: ``PullError`` for failures that retries did not cure, or a checksum mismatch.
    func fetchInRanges(_ item: DownloadItem, into partial: URL, cancel: CancellationFlag, progress: @escaping @Sendable (Int64) -> Void) throws
        -> RangedOutcome
    {
        let planURL = Self.planURL(for: partial)
        let plan = RangePlan.load(planURL, for: item) ?? RangePlan(size: item.size, hash: item.hash, workers: settings.rangeParts)
        let fd = open(partial.path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw storageError(errno, "cannot open \(partial.path) for \(item.path)") }
        defer { close(fd) }
        if fileSize(partial.path) != item.size {
            guard ftruncate(fd, off_t(item.size)) == 0 else { throw storageError(errno, "cannot size \(partial.path)") }
        }
        plan.save(planURL)

        let shared = Locked(plan)
        let failure = Locked<PullError?>(nil)
        let unsupported = Locked(false)
        let stop = CancellationFlag()
        let report: @Sendable () -> Void = {
            progress(shared.withLock { $0.parts.reduce(0) { $0 + $1.done } })
        }
        report()
        // Workers take the unfinished parts in file order. The file's own transfer is always one; up to
        // `rangeParts - 1` more start while the pull has transfers to spare, and an extra one leaves when the pull
        // runs over its budget (another file started).
        let pending = Locked(plan.parts.indices.filter { plan.parts[$0].done < plan.parts[$0].length }[...])
        let workers = Locked(0)
        let prefix = PrefixHasher(kind: item.hashKind, size: item.size)
        let group = DispatchGroup()
        let budget = settings.transfers
        let maxWorkers = settings.rangeParts
        // Under a rate cap (a resumed ranged file) the workers are chosen once, here, and split the file's share
        // evenly, so their sum never exceeds it. Without one, extra workers join at part ends whenever transfers
        // are to spare; none at the start, when the pull's other files may not have taken theirs yet.
        var extras = 0
        while settings.maxReceiveRate != nil, extras + 1 < min(maxWorkers, pending.withLock({ $0.count })), budget.tryBegin() {
            extras += 1
        }
        let workerRate = settings.maxReceiveRate.map { max(1, $0 / Int64(1 + extras)) }
        @Sendable func startWorker(extra: Bool) {
            group.enter()
            let thread = Thread {
                defer {
                    if extra { budget.end() }
                    workers.withLock { $0 -= 1 }
                    group.leave()
                }
                do {
                    while !stop.isCancelled, !(extra && budget.isOver), let index = pending.withLock({ $0.popFirst() }) {
                        try self.fetchPart(
                            index, item: item, fd: fd, plan: shared, planURL: planURL, prefix: prefix, rate: workerRate,
                            cancel: cancel, stop: stop, report: report)
                        if workerRate == nil { addWorkers() }
                    }
                } catch RangeUnsupported.unsupported {
                    unsupported.withLock { $0 = true }
                    stop.cancel()
                } catch {
                    let error = error as? PullError ?? PullError(.network, "\(error)")
                    failure.withLock { if $0 == nil { $0 = error } }
                    stop.cancel()
                }
            }
            thread.name = "modeld.range"
            thread.stackSize = 1 << 20
            thread.start()
        }
        /// Starts extra workers while parts wait and the pull has transfers to spare.
        @Sendable func addWorkers() {
            while !stop.isCancelled {
                let started = workers.withLock { count -> Bool in
                    guard count < maxWorkers, !pending.withLock({ $0.isEmpty }), budget.tryBegin() else { return false }
                    count += 1
                    return true
                }
                guard started else { return }
                startWorker(extra: true)
            }
        }
        workers.withLock { $0 = 1 + extras }
        startWorker(extra: false)
        for _ in 0..<extras { startWorker(extra: true) }
        // Hash the contiguous prefix while the ranges are still arriving: the worker writing at its end hashes
        // straight from libcurl's buffer, this thread reads back what other workers wrote ahead of it.
        let transfersDone = CancellationFlag()
        let hashed = Locked<(hasher: ContentHasher, length: Int64)?>(nil)
        let hashFinished = DispatchSemaphore(value: 0)
        let hashThread = Thread {
            defer { hashFinished.signal() }
            hashed.withLock {
                $0 = Self.followHash(
                    item, partial: partial, plan: shared, prefix: prefix, stop: stop, cancel: cancel, transfersDone: transfersDone)
            }
        }
        hashThread.name = "modeld.hash"
        hashThread.stackSize = 1 << 20
        hashThread.start()

        group.wait()
        transfersDone.cancel()
        hashFinished.wait()
        // Every range's progress, for a resume after a failure, a cancellation or a restart.
        shared.withLock { $0 }.save(planURL)
        if cancel.isCancelled { throw PullError(.cancelled, "cancelled while downloading \(item.path)") }
        if unsupported.withLock({ $0 }) {
            unlink(partial.path)
            unlink(planURL.path)
            return .unsupported
        }
        if let error = failure.withLock({ $0 }) { throw error }

        var hasher = ContentHasher(kind: item.hashKind, size: item.size)
        var read: Int64
        if let done = hashed.withLock({ $0 }), done.length == item.size {
            hasher = done.hasher
            read = done.length
        } else {
            do {
                read = try ContentHasher.hashFile(at: partial.path, kind: item.hashKind, size: item.size, hasher: &hasher)
            } catch {
                throw storageError((error as? POSIXError)?.code.rawValue ?? EIO, "cannot read back \(partial.path)")
            }
        }
        unlink(planURL.path)
        if read != item.size || hasher.finalize() != item.hash {
            unlink(partial.path)
            throw RangeChecksumMismatch()
        }
        return .complete
    }

    private enum RangeUnsupported: Error { case unsupported }

    /// Hashes the file's contiguous downloaded prefix as it grows (ranges complete out of order), reading back
    /// what the workers did not hash themselves.
    /// - Returns: the hash over the whole file, or nil when the transfers stopped before it was complete.
    private static func followHash(
        _ item: DownloadItem, partial: URL, plan: Locked<RangePlan>, prefix: PrefixHasher, stop: CancellationFlag,
        cancel: CancellationFlag, transfersDone: CancellationFlag
    ) -> (hasher: ContentHasher, length: Int64)? {
        let fd = open(partial.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let hashed = prefix.position
            if hashed >= item.size { return prefix.result() }
            if cancel.isCancelled || stop.isCancelled { return nil }
            let finished = transfersDone.isCancelled
            let ready = plan.withLock { plan -> Int64 in
                var contiguous: Int64 = 0
                for part in plan.parts {
                    contiguous += part.done
                    if part.done < part.length { break }
                }
                return contiguous
            }
            if ready <= hashed {
                if finished { return nil }
                usleep(2000)
                continue
            }
            let want = Int(min(Int64(chunk), ready - hashed))
            let got = pread(fd, buffer.baseAddress, want, off_t(hashed))
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { return nil }
            // Ignored when a worker hashed these bytes in the meantime.
            _ = prefix.offer(UnsafeRawBufferPointer(rebasing: buffer[0..<got]), at: hashed)
        }
    }

    /// One range, retried and resumed until complete. Small network reads are staged into 256 KiB blocks, so the
    /// file is written and the shared plan and progress are touched once per block, not once per read; a large
    /// read (a fast link hands libcurl's whole buffer over at once) is written straight from libcurl's buffer.
    private func fetchPart(
        _ index: Int, item: DownloadItem, fd: Int32, plan: Locked<RangePlan>, planURL: URL, prefix: PrefixHasher,
        rate: Int64?, cancel: CancellationFlag, stop: CancellationFlag, report: @Sendable () -> Void
    ) throws {
        let capacity = 256 << 10
        let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
        defer { staging.deallocate() }
        var failures = 0
        while true {
            if cancel.isCancelled || stop.isCancelled { return }
            let part = plan.withLock { $0.parts[index] }
            if part.done >= part.length { return }
            var url = item.url
            var hops = 0
            // Bytes of this attempt written to the file, and bytes waiting in `staging`.
            var received: Int64 = 0
            var staged = 0
            var lastSaved: Int64 = 0
            var writeError: Int32 = 0
            var outcome: PullError?
            var retryAfter: Duration?

            /// Writes bytes at their place (right after those already written) and publishes the progress.
            func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
                let offset = part.start + part.done + received
                var done = 0
                while done < bytes.count {
                    let wrote = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + Int64(done)))
                    if wrote < 0 {
                        if errno == EINTR { continue }
                        writeError = errno
                        return false
                    }
                    done += wrote
                }
                // Before the plan says these bytes are in, so the follower never reads back what is hashed here.
                _ = prefix.offer(bytes, at: offset)
                received += Int64(bytes.count)
                pulledBytes.increment(by: bytes.count)
                let total = part.done + received
                plan.withLock { $0.parts[index].done = total }
                if received - lastSaved >= 32 << 20 {
                    lastSaved = received
                    plan.withLock { $0 }.save(planURL)
                }
                report()
                return true
            }

            /// Writes the staged bytes.
            func flush() -> Bool {
                guard staged > 0 else { return true }
                defer { staged = 0 }
                return write(UnsafeRawBufferPointer(rebasing: staging[0..<staged]))
            }

            redirects: while true {
                var headers = settings.headers(for: url)
                let from = part.start + part.done + received
                headers.append(("Range", "bytes=\(from)-\(part.end)"))
                let request = DownloadRequest(
                    url: url, headers: headers, stallTimeout: settings.stallTimeout,
                    maxReceiveRate: rate, httpVersion: settings.httpVersion)
                var redirect: String?
                var wrongRange = false
                var whole = false
                var errorBody = Data()
                var writing = false
                // The server announced more than the range asked for (it ignored the range's end).
                var overlong = false
                var result: (head: HTTPResponseHead, stopped: Bool)?
                var transportError: CurlError?
                do {
                    result = try pool.withHandle { curl in
                        try curl.perform(
                            request,
                            onHead: { head in
                                switch head.status {
                                case 206:
                                    guard contentRangeStart(head.headers["content-range"]) == from else {
                                        wrongRange = true
                                        return .abort
                                    }
                                    writing = true
                                    overlong = (contentRangeEnd(head.headers["content-range"]) ?? part.end) > part.end
                                    return .receive
                                case 200:
                                    whole = true
                                    return .abort
                                case 301, 302, 303, 307, 308:
                                    redirect = head.headers["location"]
                                    return .discard
                                default:
                                    return .receive
                                }
                            },
                            onData: { chunk in
                                if cancel.isCancelled || stop.isCancelled { return false }
                                guard writing else {
                                    if errorBody.count < 1 << 16 { errorBody.append(contentsOf: chunk) }
                                    return true
                                }
                                let room = part.length - part.done - received - Int64(staged)
                                // A server that sends past the range's end is cut off once the range is in,
                                // instead of reading (and dropping) the rest of the file.
                                guard room > 0 else { return false }
                                var remaining = UnsafeRawBufferPointer(rebasing: chunk[0..<Int(min(Int64(chunk.count), room))])
                                while !remaining.isEmpty {
                                    if staged == 0 && remaining.count >= capacity / 4 {
                                        if !write(remaining) { return false }
                                        break
                                    }
                                    let take = min(remaining.count, capacity - staged)
                                    UnsafeMutableRawBufferPointer(rebasing: staging[staged..<(staged + take)])
                                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: remaining[0..<take]))
                                    staged += take
                                    remaining = UnsafeRawBufferPointer(rebasing: remaining[take...])
                                    if staged == capacity && !flush() { return false }
                                }
                                // With the range complete, an overlong answer is cut off at once rather than
                                // waited for (and dropped).
                                return Int64(chunk.count) < room || (Int64(chunk.count) == room && !overlong)
                            })
                    }
                } catch let error as CurlError {
                    transportError = error
                }
                _ = flush()
                if writeError != 0 { throw storageError(writeError, "cannot write \(item.path)") }
                if cancel.isCancelled || stop.isCancelled { return }
                if whole { throw RangeUnsupported.unsupported }
                if let transportError {
                    let error = PullError.network(transportError, while: "downloading \(item.path)")
                    // A certificate that does not verify, a malformed URL: another try cannot help.
                    guard transportError.isTransient || transportError.isAborted else { throw error }
                    outcome = error
                    break redirects
                }
                if wrongRange {
                    outcome = PullError(.invalidResponse, "the server answered the wrong range for \(item.path)")
                    break redirects
                }
                guard let result else { break redirects }
                let status = result.head.status
                if let redirect, (300...399).contains(status) {
                    hops += 1
                    guard hops <= 10, let next = URL(string: redirect, relativeTo: URL(string: url))?.absoluteString else {
                        throw PullError(.invalidResponse, "too many or invalid redirects while downloading \(item.path)")
                    }
                    url = next
                    continue redirects
                }
                if status == 206 {
                    if part.done + received >= part.length { return }
                    outcome = PullError(.network, "a range of \(item.path) ended early")
                } else if RetryPolicy.isRetryable(status: status) {
                    retryAfter = settings.policy.serverDelay(headers: result.head.headers)
                    outcome = PullError(
                        status == 429 ? .rateLimited : .server,
                        status == 429
                            ? "rate limited by \(hostOf(url)) while downloading \(item.path) (HTTP 429 after \(settings.policy.maxAttempts) tries); wait a few minutes and pull again"
                            : "\(hostOf(url)) answered HTTP \(status) while downloading \(item.path) (\(settings.policy.maxAttempts) tries); try again later"
                    )
                } else {
                    throw mapError(HubResponse(head: result.head, body: errorBody), item)
                }
                break redirects
            }
            if received > 0 { failures = 0 }
            failures += 1
            if failures >= settings.policy.maxAttempts, let outcome { throw outcome }
            guard cancel.sleep(for: retryAfter ?? settings.policy.delay(afterFailures: failures)), !stop.isCancelled else { return }
        }
    }
}

/// A ranged download whose reassembled file hashed wrong.
struct RangeChecksumMismatch: Error {}

/// The hash of a ranged download's contiguous prefix, advanced by whichever thread has the bytes at its end:
/// the worker writing there (straight from libcurl's buffer) or the follower reading back the file.
final class PrefixHasher: @unchecked Sendable {
    private let lock = NSLock()
    /// Guarded by `lock`.
    private var hasher: ContentHasher
    /// Bytes hashed so far; written under `lock`, read without it to skip the lock when the bytes are not next.
    private let frontier = Atomic<Int64>(0)

    init(kind: HashKind, size: Int64) {
        hasher = ContentHasher(kind: kind, size: size)
    }

    var position: Int64 { frontier.load(ordering: .acquiring) }

    /// Hashes `bytes` if they are the next ones (they start at ``position``).
    /// - Returns: whether they were hashed.
    func offer(_ bytes: UnsafeRawBufferPointer, at offset: Int64) -> Bool {
        guard frontier.load(ordering: .acquiring) == offset else { return false }
        lock.lock()
        defer { lock.unlock() }
        guard frontier.load(ordering: .relaxed) == offset else { return false }
        hasher.update(bytes)
        frontier.store(offset + Int64(bytes.count), ordering: .releasing)
        return true
    }

    /// The hasher and the bytes it has seen.
    func result() -> (hasher: ContentHasher, length: Int64) {
        lock.lock()
        defer { lock.unlock() }
        return (hasher, frontier.load(ordering: .relaxed))
    }
}
