import Foundation
import Hubs

/// Writes a download's bytes to its partial file and hashes them, straight from libcurl's buffer.
///
/// Each network read is written where it belongs and fed to the hash on the transfer thread itself: no copy
/// into buffers of our own and no hand-over to a second thread. Several files download at once (each on its
/// own thread), which keeps the cores busy; a large file alone comes as parallel ranges.
final class HashingWriter {
    private var hasher: ContentHasher
    private let fd: Int32
    private var offset: Int64
    private var failure: POSIXError?

    /// - Parameters:
    ///   - fd: the partial file, open for writing.
    ///   - offset: where the next byte goes (the bytes before it are already hashed into `hasher`).
    init(fd: Int32, offset: Int64, hasher: ContentHasher) {
        self.fd = fd
        self.offset = offset
        self.hasher = hasher
    }

    /// Writes and hashes bytes.
    /// - Returns: false once writing failed (the error comes from ``finish()``).
    func append(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard failure == nil else { return false }
        var done = 0
        while done < bytes.count {
            let wrote = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + Int64(done)))
            if wrote < 0 {
                if errno == EINTR { continue }
                failure = POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                return false
            }
            done += wrote
        }
        hasher.update(bytes)
        offset += Int64(bytes.count)
        return true
    }

    /// The hash state and length after the last byte written.
    /// - Returns: the hasher over every byte now in the file, and the file's length.
    /// - Throws: the first write error (for example ENOSPC).
    func finish() throws -> (hasher: ContentHasher, length: Int64) {
        if let failure { throw failure }
        return (hasher, offset)
    }
}
