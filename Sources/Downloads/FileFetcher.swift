import CoreMetrics
import Foundation
import Hubs
import Logging
import ModelStore
import Transfer

/// Downloads one file into a partial file, resuming from the bytes already there, hashing while streaming,
/// retrying transient failures; blocking, for a worker thread.
struct FileFetcher: Sendable {
    let settings: DownloadSettings
    let pool: HandlePool<CurlDownload>
    let logger: Logger
    /// Counts the bytes received and written, retries included (`modeld_pulled_bytes_total{source}`).
    let pulledBytes: CoreMetrics.Counter
    /// Maps a final error reply to a user-facing error (the hub's own error codes).
    let mapError: @Sendable (HubResponse, DownloadItem) -> PullError

    /// Fetches `item` into `partial` until it is complete and its hash matches.
    /// - Parameter progress: the bytes of the file now on disk (or arriving), called often.
    /// - Throws: ``PullError``; the partial file is kept for a later resume unless its content was wrong.
    func fetch(_ item: DownloadItem, into partial: URL, cancel: CancellationFlag, progress: @escaping @Sendable (Int64) -> Void) throws {
        settings.transfers.begin()
        defer { settings.transfers.end() }
        var transientFailures = 0
        var checksumFailures = 0
        var rangesAllowed = true
        while rangesAllowed && usesRanges(item, partial: partial) {
            do {
                switch try fetchInRanges(item, into: partial, cancel: cancel, progress: progress) {
                case .complete: return
                case .unsupported: rangesAllowed = false
                }
            } catch is RangeChecksumMismatch {
                checksumFailures += 1
                if checksumFailures >= settings.policy.checksumAttempts { throw checksumError(item) }
            }
        }
        let path = partial.path
        while true {
            if cancel.isCancelled { throw PullError(.cancelled, "cancelled while downloading \(item.path)") }
            var have = fileSize(path)
            if have > item.size {
                unlink(path)
                have = 0
            }
            var hasher = ContentHasher(kind: item.hashKind, size: item.size)
            if have > 0 {
                do {
                    have = try ContentHasher.hashFile(at: path, kind: item.hashKind, size: item.size, limit: have, hasher: &hasher)
                } catch {
                    unlink(path)
                    continue
                }
                progress(have)
            }
            if have == item.size {
                if hasher.finalize() == item.hash { return }
                checksumFailures += 1
                unlink(path)
                if checksumFailures >= settings.policy.checksumAttempts { throw checksumError(item) }
                continue
            }

            let outcome = try attempt(item, path: path, have: have, hasher: hasher, cancel: cancel, progress: progress)
            switch outcome {
            case .complete(let digest, let length):
                if length == item.size && digest == item.hash { return }
                unlink(path)
                checksumFailures += 1
                if checksumFailures >= settings.policy.checksumAttempts { throw checksumError(item) }
                logger.warning("downloaded content did not match its hash; downloading again", metadata: ["file": "\(item.path)"])
            case .retry(let error, let wait, let madeProgress):
                if madeProgress { transientFailures = 0 }
                transientFailures += 1
                if transientFailures >= settings.policy.maxAttempts { throw error }
                let delay = wait ?? settings.policy.delay(afterFailures: transientFailures)
                logger.warning(
                    "retrying a download", metadata: ["file": "\(item.path)", "error": "\(error.message)", "in": "\(delay)"])
                guard cancel.sleep(for: delay) else {
                    throw PullError(.cancelled, "cancelled while downloading \(item.path)")
                }
            case .restart:
                unlink(path)
                transientFailures += 1
                if transientFailures >= settings.policy.maxAttempts {
                    throw PullError(.invalidResponse, "the server kept answering ranges wrongly for \(item.path)")
                }
            }
        }
    }

    private enum Outcome {
        case complete(digest: String, length: Int64)
        case retry(PullError, wait: Duration?, madeProgress: Bool)
        /// The partial file is unusable (a range the server refused): start from zero.
        case restart
    }

    private func checksumError(_ item: DownloadItem) -> PullError {
        PullError(
            .checksumMismatch,
            "checksum mismatch for \(item.path): expected \(item.hashKind.rawValue) \(item.hash), got different content "
                + "after \(settings.policy.checksumAttempts) downloads; the file on the hub or a proxy in between is corrupt")
    }

    /// One request chain (following redirects) that appends to the partial file.
    private func attempt(
        _ item: DownloadItem, path: String, have: Int64, hasher: ContentHasher, cancel: CancellationFlag,
        progress: (Int64) -> Void
    ) throws -> Outcome {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw storageError(errno, "cannot open \(path) for \(item.path)")
        }
        defer { close(fd) }
        var url = item.url
        var hops = 0
        while true {
            var headers = settings.headers(for: url)
            if have > 0 { headers.append(("Range", "bytes=\(have)-")) }
            let request = DownloadRequest(
                url: url, headers: headers, stallTimeout: settings.stallTimeout, maxReceiveRate: settings.maxReceiveRate,
                httpVersion: settings.httpVersion)
            var writer: HashingWriter?
            var base: Int64 = 0
            var received: Int64 = 0
            var reported: Int64 = 0
            var errorBody = Data()
            var redirect: String?
            var badRange = false
            var result: (head: HTTPResponseHead, stopped: Bool)?
            var transportError: CurlError?
            do {
                result = try pool.withHandle { curl in
                    try curl.perform(
                        request,
                        onHead: { head in
                            switch head.status {
                            case 200, 206:
                                var start = have
                                var state = hasher
                                if head.status == 200 && have > 0 {
                                    // The server ignored the range: start the file again.
                                    ftruncate(fd, 0)
                                    start = 0
                                    state = ContentHasher(kind: item.hashKind, size: item.size)
                                } else if head.status == 206 {
                                    guard contentRangeStart(head.headers["content-range"]) == have else {
                                        badRange = true
                                        return .abort
                                    }
                                }
                                base = start
                                writer = HashingWriter(fd: fd, offset: start, hasher: state)
                                return .receive
                            case 301, 302, 303, 307, 308:
                                redirect = head.headers["location"]
                                return .discard
                            default:
                                return .receive
                            }
                        },
                        onData: { chunk in
                            if cancel.isCancelled { return false }
                            if let writer {
                                guard writer.append(chunk) else { return false }
                                received += Int64(chunk.count)
                                pulledBytes.increment(by: chunk.count)
                                if received - reported >= 1 << 20 {
                                    reported = received
                                    progress(base + received)
                                }
                            } else if errorBody.count < 1 << 20 {
                                errorBody.append(contentsOf: chunk)
                            }
                            return true
                        })
                }
            } catch let error as CurlError {
                transportError = error
            }
            if received > reported { progress(base + received) }
            var finished: (hasher: ContentHasher, length: Int64)?
            if let writer {
                do {
                    finished = try writer.finish()
                } catch {
                    let code = (error as? POSIXError)?.code.rawValue ?? EIO
                    throw storageError(code, "cannot write \(item.path) to \(path)")
                }
            }
            if cancel.isCancelled { throw PullError(.cancelled, "cancelled while downloading \(item.path)") }
            if let transportError {
                let error = PullError.network(transportError, while: "downloading \(item.path)")
                guard transportError.isTransient || transportError.isAborted else { throw error }
                return .retry(error, wait: nil, madeProgress: received > 0)
            }
            guard let result else { throw PullError(.network, "no response for \(item.path)") }
            if badRange { return .restart }
            if result.stopped, writer != nil {
                // The writer failed (its error was thrown above) or we were cancelled (checked above).
                throw PullError(.storage, "writing \(item.path) stopped")
            }
            let status = result.head.status
            if let redirect, (300...399).contains(status) {
                hops += 1
                guard hops <= 10, let next = URL(string: redirect, relativeTo: URL(string: url))?.absoluteString else {
                    throw PullError(.invalidResponse, "too many or invalid redirects while downloading \(item.path)")
                }
                url = next
                continue
            }
            if let finished {
                if finished.length < item.size {
                    let error = PullError(.network, "the download of \(item.path) ended early at \(finished.length) of \(item.size) bytes")
                    return .retry(error, wait: nil, madeProgress: received > 0)
                }
                return .complete(digest: finished.hasher.finalize(), length: finished.length)
            }
            if status == 416 { return .restart }
            let response = HubResponse(head: result.head, body: errorBody)
            if RetryPolicy.isRetryable(status: status) {
                let wait = settings.policy.serverDelay(headers: result.head.headers)
                let error: PullError
                if status == 429 {
                    error = PullError(
                        .rateLimited,
                        "rate limited by \(hostOf(url)) while downloading \(item.path) (HTTP 429 after \(settings.policy.maxAttempts) tries); wait a few minutes and pull again"
                    )
                } else {
                    error = PullError(
                        .server,
                        "\(hostOf(url)) answered HTTP \(status) while downloading \(item.path) (\(settings.policy.maxAttempts) tries); try again later"
                    )
                }
                return .retry(error, wait: wait, madeProgress: false)
            }
            throw mapError(response, item)
        }
    }
}

/// The first byte position of a `Content-Range: bytes a-b/n` header.
func contentRangeStart(_ value: String?) -> Int64? {
    guard let value, let range = value.split(separator: " ").last, let dash = range.firstIndex(of: "-") else { return nil }
    return Int64(range[..<dash])
}

/// The last byte position of a `Content-Range: bytes a-b/n` header.
func contentRangeEnd(_ value: String?) -> Int64? {
    guard let value, let range = value.split(separator: " ").last, let dash = range.firstIndex(of: "-") else { return nil }
    let end = range[range.index(after: dash)...].prefix { $0 != "/" }
    return Int64(end)
}

/// The size of a file (0 when missing).
func fileSize(_ path: String) -> Int64 {
    var info = stat()
    guard stat(path, &info) == 0 else { return 0 }
    return Int64(info.st_size)
}
