/// The archive kinds modeld writes; it reads all of them back (the compression is detected, not named).
package enum ArchiveFormat: String, Sendable, CaseIterable {
    case tar
    case tarGz = "tar.gz"
    case tarZst = "tar.zst"
    case zip

    /// The format a file name asks for by its extension (`.tar`, `.tar.gz`/`.tgz`, `.tar.zst`/`.tzst`, `.zip`).
    package init?(fileName: String) {
        let name = fileName.lowercased()
        if name.hasSuffix(".tar.zst") || name.hasSuffix(".tzst") {
            self = .tarZst
        } else if name.hasSuffix(".tar.gz") || name.hasSuffix(".tgz") {
            self = .tarGz
        } else if name.hasSuffix(".tar") {
            self = .tar
        } else if name.hasSuffix(".zip") {
            self = .zip
        } else {
            return nil
        }
    }

    /// The format named in an API request (`tar`, `tar.gz`, `tgz`, `tar.zst`, `tzst`, `zip`).
    package init?(name: String) {
        if let format = ArchiveFormat(rawValue: name.lowercased()) {
            self = format
        } else if let format = ArchiveFormat(fileName: "x." + name) {
            self = format
        } else {
            return nil
        }
    }

    package var fileExtension: String { rawValue }

    /// The media type of the HTTP reply that carries an archive of this format.
    package var contentType: String {
        switch self {
        case .tar: "application/x-tar"
        case .tarGz: "application/gzip"
        case .tarZst: "application/zstd"
        case .zip: "application/zip"
        }
    }

    /// Every accepted spelling, for error messages.
    package static let names = "tar, tar.gz, tar.zst or zip"
}
