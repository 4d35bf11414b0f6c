import Hubs
import ModeldAPI

/// Why an export, import or adoption failed, as one sentence a user can act on.
package struct ArchiveError: Error, CustomStringConvertible, Sendable, Equatable {
    /// An extensible failure kind; ``apiError`` maps it to an HTTP status.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        package let name: String
        package init(_ name: String) { self.name = name }
        /// An entry that could write outside the model: absolute path, `..`, an escaping link, a device file.
        package static let unsafeEntry = Code("unsafeEntry")
        /// An entry whose size disagrees with the manifest, or that the manifest does not list.
        package static let manifestMismatch = Code("manifestMismatch")
        /// An entry whose content does not hash to the manifest's hash.
        package static let checksumMismatch = Code("checksumMismatch")
        /// A missing, unreadable or inconsistent manifest.
        package static let badManifest = Code("badManifest")
        /// Not an archive libarchive can read, or a truncated or corrupt one.
        package static let unreadable = Code("unreadable")
        /// A format or archive feature modeld does not take (an unknown extension, an encrypted zip entry).
        package static let unsupported = Code("unsupported")
        /// No such version, or no such directory to adopt.
        package static let notFound = Code("notFound")
        /// The version is not ready (still downloading, failed or damaged).
        package static let notReady = Code("notReady")
        package static let diskFull = Code("diskFull")
        package static let storage = Code("storage")
        package static let cancelled = Code("cancelled")
        /// Another operation holds the repository: a pull, an import, an adoption or a removal of it.
        package static let busy = Code("busy")
        package var description: String { name }
    }

    package var code: Code
    package var message: String

    package init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The same failure from the shared cache and store helpers, which report ``PullError``s.
    package init(_ error: PullError) {
        switch error.code {
        case .diskFull: self.init(.diskFull, error.message)
        case .notFound: self.init(.notFound, error.message)
        case .unsafePath: self.init(.unsafeEntry, error.message)
        case .cancelled: self.init(.cancelled, error.message)
        case .busy: self.init(.busy, error.message)
        default: self.init(.storage, error.message)
        }
    }

    package var description: String { message }
}

extension ArchiveError: APIErrorConvertible {
    /// A bad archive or manifest is the client's (400); a missing version 404; one not ready or busy 409.
    package var apiError: APIError {
        let status =
            switch code {
            case .notFound: 404
            case .notReady, .cancelled, .busy: 409
            case .diskFull: 507
            case .storage: 500
            default: 400
            }
        return APIError(status: status, code: code.name, message: message)
    }
}
