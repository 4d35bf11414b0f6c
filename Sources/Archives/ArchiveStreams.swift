import Foundation
import ModelStore

/// Where an archive's bytes go: a file, or a ``ChunkPipe`` to an HTTP response. Called on one thread.
package protocol ArchiveOutput: Sendable {
    /// Writes every byte or throws.
    func write(_ bytes: UnsafeRawBufferPointer) throws
}

/// Where an archive's bytes come from: a file, or a ``ChunkPipe`` fed by an HTTP request body.
package protocol ArchiveInput: Sendable {
    /// Reads up to `buffer.count` bytes; 0 means the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// An open file descriptor as archive input or output; the descriptor stays the caller's to close.
package struct FileDescriptorStream: ArchiveOutput, ArchiveInput {
    package let fd: Int32

    package init(fd: Int32) {
        self.fd = fd
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let wrote = Foundation.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if wrote < 0 {
                if errno == EINTR { continue }
                throw ArchiveError(storageError(errno, "cannot write the archive"))
            }
            done += wrote
        }
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let got = Foundation.read(fd, buffer.baseAddress, buffer.count)
            if got >= 0 { return got }
            if errno != EINTR { throw ArchiveError(storageError(errno, "cannot read the archive")) }
        }
    }
}

extension ChunkPipe: ArchiveOutput {
    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        try sendBlocking(Data(bytes))
    }
}

/// Reads a ``ChunkPipe`` as a byte stream, keeping the rest of a chunk for the next read.
package final class ChunkPipeInput: ArchiveInput, @unchecked Sendable {
    private let pipe: ChunkPipe
    private var pending = Data()
    private var offset = 0

    package init(_ pipe: ChunkPipe) {
        self.pipe = pipe
    }

    package func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while offset == pending.count {
            guard let next = try pipe.receiveBlocking() else { return 0 }
            pending = next
            offset = 0
        }
        let count = min(buffer.count, pending.count - offset)
        pending.withUnsafeBytes { bytes in
            buffer.baseAddress!.copyMemory(from: bytes.baseAddress! + offset, byteCount: count)
        }
        offset += count
        return count
    }
}
