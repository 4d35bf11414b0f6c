import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A whole file mapped read-only (weights are used in place, without copying), unmapped on deinit.
package final class MappedFile: @unchecked Sendable {
    package let url: URL
    /// The file's bytes; empty for an empty file.
    package let bytes: UnsafeRawBufferPointer

    /// Maps `url`.
    /// - Throws: ``ModelError`` `unreadableFile` when it cannot be opened, sized or mapped.
    package init(url: URL) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else {
            throw ModelError(.unreadableFile, "cannot open \(url.path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        // The size by seeking to the end: `struct stat` is ambiguous between C modules on Linux.
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            throw ModelError(.unreadableFile, "cannot stat \(url.path): \(String(cString: strerror(errno)))")
        }
        let length = Int(end)
        guard length > 0 else {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let mapped = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw ModelError(.unreadableFile, "cannot map \(url.path): \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: mapped, count: length)
    }

    /// Asks the kernel to start reading the whole file (weights are about to be read front to back).
    package func willNeed() {
        guard let base = bytes.baseAddress else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base), bytes.count, MADV_WILLNEED)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}
