import Crypto
import Foundation

/// How a hub identifies a file's content (docs/design/hubs.md, File metadata; ModelScope's File listing).
package enum HashKind: String, Sendable, Codable, Hashable {
    /// SHA-256 of the bytes (Hugging Face LFS files, every ModelScope file).
    case sha256
    /// Git's blob id: SHA-1 of `"blob <size>\0"` followed by the bytes (Hugging Face regular files).
    case gitSHA1 = "git-sha1"
}

/// A hash computed incrementally, fed in large chunks (swift-crypto: BoringSSL with SHA extensions).
/// `@unchecked`: swift-crypto does not mark its digest states Sendable; a hasher is handed from thread to
/// thread (transfer, then sink) but never used by two at once.
package struct ContentHasher: @unchecked Sendable {
    private enum State {
        case sha256(SHA256)
        case sha1(Insecure.SHA1)
    }

    private var state: State

    /// - Parameter size: the file's total size, needed up front for the git blob header.
    package init(kind: HashKind, size: Int64) {
        switch kind {
        case .sha256:
            state = .sha256(SHA256())
        case .gitSHA1:
            var sha1 = Insecure.SHA1()
            sha1.update(data: Array("blob \(size)\0".utf8))
            state = .sha1(sha1)
        }
    }

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch state {
        case .sha256(var hash):
            hash.update(bufferPointer: bytes)
            state = .sha256(hash)
        case .sha1(var hash):
            hash.update(bufferPointer: bytes)
            state = .sha1(hash)
        }
    }

    /// The lower-case hex digest.
    package func finalize() -> String {
        switch state {
        case .sha256(let hash): hash.finalize().map { String(format: "%02x", $0) }.joined()
        case .sha1(let hash): hash.finalize().map { String(format: "%02x", $0) }.joined()
        }
    }

    /// Hashes a file already on disk, or its first `limit` bytes.
    /// - Parameter onProgress: called with the bytes hashed so far.
    /// - Throws: when the file cannot be read.
    package static func hashFile(
        at path: String, kind: HashKind, size: Int64, limit: Int64? = nil, hasher: inout ContentHasher,
        onProgress: (Int64) -> Void = { _ in }
    ) throws -> Int64 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        let chunk = 8 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var total: Int64 = 0
        while true {
            var want = chunk
            if let limit { want = Int(min(Int64(chunk), limit - total)) }
            if want <= 0 { break }
            let got = read(fd, buffer.baseAddress, want)
            if got < 0 {
                if errno == EINTR { continue }
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
            if got == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            total += Int64(got)
            onProgress(total)
        }
        return total
    }

    /// The digest of a whole file on disk, and its size.
    package static func digest(ofFileAt path: String, kind: HashKind) throws -> (digest: String, size: Int64) {
        var info = stat()
        guard stat(path, &info) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let size = Int64(info.st_size)
        var hasher = ContentHasher(kind: kind, size: size)
        let read = try hashFile(at: path, kind: kind, size: size, hasher: &hasher)
        return (hasher.finalize(), read)
    }
}
