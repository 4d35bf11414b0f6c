import Foundation
import Transfer

/// A hub reply with its whole body.
package struct HubResponse: Sendable {
    package var head: HTTPResponseHead
    package var body: Data
    package var status: Int { head.status }
    package func header(_ name: String) -> String? { head.headers[name.lowercased()] }
}
