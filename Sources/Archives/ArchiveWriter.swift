import CArchive
import Foundation
import ModeldAPI

/// Writes a tar (plain, gzip or zstd) or zip archive through libarchive, entry by entry, to an
/// ``ArchiveOutput``. Nothing is staged: each entry's bytes go straight from the caller to the output.
/// Use from one thread.
final class ArchiveWriter {
    private let archive: OpaquePointer
    private let sink: Sink
    private var closed = false

    /// The output and the first error it threw (libarchive only sees "failed").
    private final class Sink {
        let output: any ArchiveOutput
        var failure: (any Error)?
        init(output: any ArchiveOutput) { self.output = output }
    }

    /// - Throws: ``ArchiveError`` when libarchive cannot set the format up.
    init(format: ArchiveFormat, output: any ArchiveOutput) throws {
        guard let archive = archive_write_new() else { throw ArchiveError(.storage, "libarchive: out of memory") }
        self.archive = archive
        self.sink = Sink(output: output)
        // On failure deinit frees the handle.
        switch format {
        case .tar, .tarGz, .tarZst:
            // pax keeps long names and large sizes; "restricted" writes plain ustar headers when they suffice.
            try check(archive_write_set_format_pax_restricted(archive))
            if format == .tarGz {
                try check(archive_write_add_filter_gzip(archive))
                // No time in the gzip header: the same version exports to the same bytes.
                try check(archive_write_set_filter_option(archive, "gzip", "timestamp", nil))
            }
            if format == .tarZst { try check(archive_write_add_filter_zstd(archive)) }
        case .zip:
            try check(archive_write_set_format_zip(archive))
            // Weights do not compress: store them, so a zip costs no CPU and streams at disk speed.
            try check(archive_write_set_options(archive, "zip:compression=store"))
        }
        // Hand the output 1 MiB at a time (libarchive's default is 10 KiB, which costs a pipe hop per 10 KiB),
        // and do not pad the end: readers need no fixed-size final record.
        try check(archive_write_set_bytes_per_block(archive, 1 << 20))
        try check(archive_write_set_bytes_in_last_block(archive, 1))
        let context = Unmanaged.passUnretained(sink).toOpaque()
        try check(archive_write_open2(archive, context, nil, archiveWriteCallback, nil, nil))
    }

    deinit {
        if !closed { archive_write_fail(archive) }
        archive_write_free(archive)
    }

    /// Writes a regular file entry; `body` hands its bytes to the given writer, exactly `size` of them.
    func addFile(path: String, size: Int64, modified: Date, body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname_utf8(entry, path)
        archive_entry_set_filetype(entry, UInt32(MODELD_AE_IFREG))
        archive_entry_set_perm(entry, 0o644)
        archive_entry_set_size(entry, size)
        archive_entry_set_mtime(entry, time_t(modified.timeIntervalSince1970), 0)
        try check(archive_write_header(archive, entry))
        var written: Int64 = 0
        try body { bytes in
            var done = 0
            while done < bytes.count {
                let wrote = archive_write_data(archive, bytes.baseAddress! + done, bytes.count - done)
                if wrote < 0 { try check(Int32(truncatingIfNeeded: wrote)) }
                if wrote == 0 { throw ArchiveError(.storage, "libarchive accepted no bytes for \(path)") }
                done += wrote
            }
            written += Int64(bytes.count)
        }
        guard written == size else {
            throw ArchiveError(.storage, "\(path) changed while it was archived (\(written) bytes, expected \(size))")
        }
        try check(archive_write_finish_entry(archive))
    }

    /// Writes a hard link entry: `path` has the same content as the earlier entry `target` (tar only).
    func addHardLink(path: String, target: String, modified: Date) throws {
        let entry = archive_entry_new()
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname_utf8(entry, path)
        archive_entry_set_filetype(entry, UInt32(MODELD_AE_IFREG))
        archive_entry_set_perm(entry, 0o644)
        archive_entry_set_hardlink_utf8(entry, target)
        archive_entry_set_size(entry, 0)
        archive_entry_set_mtime(entry, time_t(modified.timeIntervalSince1970), 0)
        try check(archive_write_header(archive, entry))
        try check(archive_write_finish_entry(archive))
    }

    /// Writes the archive's trailer and flushes the compressor.
    func close() throws {
        closed = true
        try check(archive_write_close(archive))
    }

    private func check(_ status: Int32) throws {
        guard status < ARCHIVE_OK else { return }
        if status == ARCHIVE_WARN { return }
        if let failure = sink.failure { throw failure }
        let message = archive_error_string(archive).map { String(cString: $0) } ?? "error \(status)"
        throw ArchiveError(.storage, "cannot write the archive: \(message)")
    }
}

/// libarchive's write callback: hands the bytes to the ``ArchiveWriter``'s output.
private func archiveWriteCallback(
    _ archive: OpaquePointer?, _ context: UnsafeMutableRawPointer?, _ buffer: UnsafeRawPointer?, _ length: Int
) -> Int {
    guard let context, let buffer else { return -1 }
    let sink = Unmanaged<AnyObject>.fromOpaque(context).takeUnretainedValue()
    return ArchiveWriter.deliver(sink, UnsafeRawBufferPointer(start: buffer, count: length))
}

extension ArchiveWriter {
    /// Passes a block to the output; -1 (and the error kept) when it throws.
    fileprivate static func deliver(_ object: AnyObject, _ bytes: UnsafeRawBufferPointer) -> Int {
        guard let sink = object as? Sink else { return -1 }
        do {
            try sink.output.write(bytes)
            return bytes.count
        } catch {
            if sink.failure == nil { sink.failure = error }
            return -1
        }
    }
}
