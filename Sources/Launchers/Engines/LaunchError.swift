import ModeldAPI

/// A run that cannot be launched, or a supervisor request that cannot be honoured; prints as one sentence.
package struct LaunchError: Error, CustomStringConvertible, Sendable {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        package static let engineNotFound = Code(name: "engineNotFound")
        package static let invalidSpec = Code(name: "invalidSpec")
        package static let spawnFailed = Code(name: "spawnFailed")
        package static let noFreePort = Code(name: "noFreePort")
        package static let noGPU = Code(name: "noGPU")
        package static let runNotFound = Code(name: "runNotFound")
        package static let nameInUse = Code(name: "nameInUse")
        package static let ollamaModel = Code(name: "ollamaModel")
        package static let store = Code(name: "store")
        package static let logs = Code(name: "logs")
        package var description: String { name }
    }

    package var code: Code
    package var message: String
    package var cause: (any Error)?

    package init(code: Code, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    package var description: String {
        if let cause { return "\(message): \(cause)" }
        return message
    }
}

extension LaunchError: APIErrorConvertible {
    /// The message alone: the cause is for the log.
    package var apiError: APIError {
        let status =
            switch code {
            case .runNotFound: 404
            case .nameInUse, .noGPU: 409
            case .engineNotFound, .invalidSpec, .ollamaModel: 400
            case .noFreePort: 503
            default: 500
            }
        return APIError(status: status, code: code.name, message: message)
    }
}
