import Foundation
import Transfer

/// A hub reply with its whole body.
package struct HubResponse: Sendable {
    package var head: HTTPResponseHead
    package var body: Data

    package init(head: HTTPResponseHead, body: Data) {
        self.head = head
        self.body = body
    }

    package var status: Int { head.status }
    package func header(_ name: String) -> String? { head.headers[name.lowercased()] }
}
