import CoreMetrics
import Foundation
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
    func usesRanges(_ item: DownloadItem, partial: URL) -> Bool {
        guard settings.rangeParts > 1, item.size >= settings.rangeThreshold else { return false }
        let hasPartial = FileManager.default.fileExists(atPath: partial.path)
        return !hasPartial || RangePlan.load(Self.planURL(for: partial), for: item) != nil
    }

    /// Downloads `item` as `settings.rangeParts` ranges at once into the partial file, then hashes the whole.
    /// - Throws: ``PullError`` for failures that retries did not cure, or a checksum mismatch.
    func fetchInRanges(_ item: DownloadItem, into partial: URL, cancel: CancellationFlag, progress: @escaping @Sendable (Int64) -> Void) throws
        -> RangedOutcome
    {
        let planURL = Self.planURL(for: partial)
        var plan = RangePlan.load(planURL, for: item) ?? RangePlan(size: item.size, hash: item.hash, count: settings.rangeParts)
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
        let group = DispatchGroup()
        for index in plan.parts.indices where plan.parts[index].done < plan.parts[index].length {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                do {
                    try self.fetchPart(
                        index, item: item, fd: fd, plan: shared, planURL: planURL, cancel: cancel, stop: stop, report: report)
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
        // Hash the contiguous prefix from disk while the ranges are still arriving.
        let transfersDone = CancellationFlag()
        let hashed = Locked<(hasher: ContentHasher, length: Int64)?>(nil)
        let hashFinished = DispatchSemaphore(value: 0)
        let hashThread = Thread {
            defer { hashFinished.signal() }
            hashed.withLock { $0 = Self.followHash(item, partial: partial, plan: shared, stop: stop, cancel: cancel, transfersDone: transfersDone) }
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

    /// Hashes the file's contiguous downloaded prefix as it grows (ranges complete out of order).
    /// - Returns: the hash over the whole file, or nil when the transfers stopped before it was complete.
    private static func followHash(
        _ item: DownloadItem, partial: URL, plan: Locked<RangePlan>, stop: CancellationFlag, cancel: CancellationFlag,
        transfersDone: CancellationFlag
    ) -> (hasher: ContentHasher, length: Int64)? {
        let fd = open(partial.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let chunk = 8 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var hasher = ContentHasher(kind: item.hashKind, size: item.size)
        var hashed: Int64 = 0
        while hashed < item.size {
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
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            hashed += Int64(got)
        }
        return (hasher, hashed)
    }

    /// One range, retried and resumed until complete. Bytes are staged in 1 MiB blocks, so the file is written
    /// and the shared plan and progress are touched once per block, not once per network read.
    private func fetchPart(
        _ index: Int, item: DownloadItem, fd: Int32, plan: Locked<RangePlan>, planURL: URL, cancel: CancellationFlag,
        stop: CancellationFlag, report: @Sendable () -> Void
    ) throws {
        let capacity = 1 << 20
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

            /// Writes the staged bytes at their place and publishes the progress.
            func flush() -> Bool {
                guard staged > 0 else { return true }
                let offset = part.start + part.done + received
                var done = 0
                while done < staged {
                    let wrote = pwrite(fd, staging.baseAddress! + done, staged - done, off_t(offset + Int64(done)))
                    if wrote < 0 {
                        if errno == EINTR { continue }
                        writeError = errno
                        return false
                    }
                    done += wrote
                }
                received += Int64(staged)
                pulledBytes.increment(by: staged)
                staged = 0
                let total = part.done + received
                plan.withLock { $0.parts[index].done = total }
                if received - lastSaved >= 32 << 20 {
                    lastSaved = received
                    plan.withLock { $0 }.save(planURL)
                }
                report()
                return true
            }

            redirects: while true {
                var headers = settings.headers(for: url)
                let from = part.start + part.done + received
                headers.append(("Range", "bytes=\(from)-\(part.end)"))
                let request = DownloadRequest(
                    url: url, headers: headers, stallTimeout: settings.stallTimeout,
                    maxReceiveRate: settings.maxReceiveRate.map { max(1, $0 / Int64(settings.rangeParts)) }, httpVersion: settings.httpVersion)
                var redirect: String?
                var wrongRange = false
                var whole = false
                var errorBody = Data()
                var writing = false
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
                                    let take = min(remaining.count, capacity - staged)
                                    UnsafeMutableRawBufferPointer(rebasing: staging[staged..<(staged + take)])
                                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: remaining[0..<take]))
                                    staged += take
                                    remaining = UnsafeRawBufferPointer(rebasing: remaining[take...])
                                    if staged == capacity && !flush() { return false }
                                }
                                return Int64(chunk.count) <= room
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
                    outcome = PullError(.network, "network error while downloading \(item.path) from \(hostOf(url)): \(transportError.message)")
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
                            : "\(hostOf(url)) answered HTTP \(status) while downloading \(item.path) (\(settings.policy.maxAttempts) tries); try again later")
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
