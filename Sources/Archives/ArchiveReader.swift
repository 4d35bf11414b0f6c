import CArchive
import Foundation

/// Reads a tar (plain, gzip or zstd) or zip archive through libarchive from an ``ArchiveInput``, one entry at
/// a time, in a single forward pass (zip through libarchive's streaming reader: local headers, not the central
/// directory). Use from one thread.
final class ArchiveReader {
    /// What an entry's header says. The caller decides whether to trust it.
    struct Entry {
        enum Kind: Equatable {
            case file
            case directory
            case symlink(target: String)
            case other(mode: UInt32)
        }

        var path: String
        var kind: Kind
        /// Set for hard links: the earlier entry whose content this one shares.
        var hardLinkTarget: String?
        /// nil when the header does not say (a zip entry written with a data descriptor).
        var size: Int64?
        var isEncrypted: Bool
    }

    private let archive: OpaquePointer
    private let source: Source
    private var entry: OpaquePointer?

    private final class Source {
        let input: any ArchiveInput
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        var failure: (any Error)?
        init(input: any ArchiveInput) { self.input = input }
        deinit { buffer.deallocate() }
    }

    /// - Throws: ``ArchiveError`` when the input is not an archive modeld reads.
    init(input: any ArchiveInput) throws {
        guard let archive = archive_read_new() else { throw ArchiveError(.storage, "libarchive: out of memory") }
        self.archive = archive
        self.source = Source(input: input)
        // Only what modeld writes: tar and zip, uncompressed, gzip or zstd. No filter that runs an external program.
        archive_read_support_filter_none(archive)
        archive_read_support_filter_gzip(archive)
        archive_read_support_filter_zstd(archive)
        archive_read_support_format_tar(archive)
        archive_read_support_format_zip_streamable(archive)
        let context = Unmanaged.passUnretained(source).toOpaque()
        let status = archive_read_open(archive, context, nil, archiveReadCallback, nil)
        // On failure deinit frees the handle.
        if status != ARCHIVE_OK { throw failure(status, doing: "open") }
    }

    deinit {
        archive_read_free(archive)
    }

    /// The next entry's header, or nil at the end of the archive.
    func next() throws -> Entry? {
        var pointer: OpaquePointer?
        let status = archive_read_next_header(archive, &pointer)
        if status == ARCHIVE_EOF { return nil }
        guard status == ARCHIVE_OK || status == ARCHIVE_WARN, let pointer else { throw failure(status, doing: "read an entry header") }
        entry = pointer
        let path =
            archive_entry_pathname_utf8(pointer).map { String(cString: $0) }
            ?? archive_entry_pathname(pointer).map { String(decoding: Data(bytes: $0, count: strlen($0)), as: UTF8.self) } ?? ""
        let type = UInt32(archive_entry_filetype(pointer))
        let kind: Entry.Kind
        switch Int(type) {
        case MODELD_AE_IFREG: kind = .file
        case MODELD_AE_IFDIR: kind = .directory
        case MODELD_AE_IFLNK:
            kind = .symlink(
                target: archive_entry_symlink_utf8(pointer).map { String(cString: $0) } ?? archive_entry_symlink(pointer).map { String(cString: $0) }
                    ?? "")
        default: kind = .other(mode: type)
        }
        let hardLink = archive_entry_hardlink_utf8(pointer).map { String(cString: $0) } ?? archive_entry_hardlink(pointer).map { String(cString: $0) }
        return Entry(
            path: path, kind: kind, hardLinkTarget: hardLink,
            size: archive_entry_size_is_set(pointer) != 0 ? archive_entry_size(pointer) : nil,
            isEncrypted: archive_entry_is_encrypted(pointer) != 0)
    }

    /// Reads the current entry's bytes, handing each block to `body`.
    func readData(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let got = archive_read_data(archive, buffer.baseAddress, buffer.count)
            if got == 0 { return }
            if got < 0 {
                let status = Int32(truncatingIfNeeded: got)
                if status == ARCHIVE_WARN { continue }
                throw failure(status, doing: "read the data of an entry")
            }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
        }
    }

    /// The input's own error when it caused the failure, else libarchive's message.
    private func failure(_ status: Int32, doing what: String) -> any Error {
        if let failure = source.failure { return failure }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "error \(status)"
        return ArchiveError(.unreadable, "cannot \(what) of the archive: \(message)")
    }
}

/// libarchive's read callback: fills the ``ArchiveReader``'s buffer from its input.
private func archiveReadCallback(
    _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ buffer: UnsafeMutablePointer<UnsafeRawPointer?>?
) -> Int {
    guard let context, let buffer else { return -1 }
    return ArchiveReader.fill(Unmanaged<AnyObject>.fromOpaque(context).takeUnretainedValue(), buffer)
}

extension ArchiveReader {
    fileprivate static func fill(_ object: AnyObject, _ pointer: UnsafeMutablePointer<UnsafeRawPointer?>) -> Int {
        guard let source = object as? Source else { return -1 }
        do {
            let count = try source.input.read(into: source.buffer)
            pointer.pointee = UnsafeRawPointer(source.buffer.baseAddress)
            return count
        } catch {
            if source.failure == nil { source.failure = error }
            return -1
        }
    }
}
