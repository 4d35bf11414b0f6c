import ModeldAPI
import Transfer

/// Why a pull failed, as one sentence a user can act on. Never contains a token.
package struct PullError: Error, CustomStringConvertible, Sendable, Equatable {
    /// An extensible failure kind; ``apiError`` maps it to an HTTP status.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        package let name: String
        package init(_ name: String) { self.name = name }
        package static let gated = Code("gated")
        package static let repoNotFound = Code("repoNotFound")
        package static let revisionNotFound = Code("revisionNotFound")
        package static let entryNotFound = Code("entryNotFound")
        package static let unauthorized = Code("unauthorized")
        package static let rateLimited = Code("rateLimited")
        package static let diskFull = Code("diskFull")
        package static let checksumMismatch = Code("checksumMismatch")
        package static let unsafePath = Code("unsafePath")
        package static let network = Code("network")
        package static let server = Code("server")
        package static let invalidResponse = Code("invalidResponse")
        package static let cancelled = Code("cancelled")
        package static let storage = Code("storage")
        package static let notFound = Code("notFound")
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

    package var description: String { message }

    package static func cancelled(_ what: String) -> PullError {
        PullError(.cancelled, "pull of \(what) was cancelled")
    }

    /// An import, adoption or removal refused while a pull of the repository runs.
    package static func beingPulled(_ repo: String) -> PullError {
        PullError(.busy, "\(repo) is being pulled; wait for the pull or cancel it, then try again")
    }

    /// A request that failed in transport while `what` (`downloading config.json`), after `tries` tries.
    package static func network(_ error: CurlError, while what: String, tries: Int = 1) -> PullError {
        var message = "network error while \(what)"
        if tries > 1 { message += " after \(tries) tries" }
        message += ": \(error.message)"
        if error.isUntrustedCertificate {
            message += "; for a hub behind a private CA, point ca_bundle (or CURL_CA_BUNDLE) at its CA certificate"
        }
        return PullError(.network, message)
    }
}

extension PullError: APIErrorConvertible {
    /// A hub's refusal as the hub's kind of status (403, 404, 429); what the hub or the network got wrong, a 502; a
    /// pull cancelled or a repository busy, a 409.
    package var apiError: APIError {
        let status =
            switch code {
            case .gated, .unauthorized: 403
            case .repoNotFound, .revisionNotFound, .entryNotFound, .notFound: 404
            case .rateLimited: 429
            case .diskFull: 507
            case .checksumMismatch, .unsafePath, .network, .server, .invalidResponse: 502
            case .cancelled, .busy: 409
            default: 500
            }
        return APIError(status: status, code: code.name, message: message)
    }
}
