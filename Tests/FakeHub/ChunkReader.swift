import Foundation

/// Calls `body` with each chunk read from `handle` as it comes, until `body` returns false, end-of-file or a read
/// error. Foundation's `availableData` stops the whole test process on a read error (a descriptor closed under it),
/// and `read(upToCount:)` waits for the whole count, so this reads the descriptor itself.
package func forEachChunk(of handle: FileHandle, _ body: (Data) -> Bool) {
    let descriptor = handle.fileDescriptor
    var buffer = [UInt8](repeating: 0, count: 64 << 10)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 || !body(Data(buffer[0..<count])) { return }
    }
}
