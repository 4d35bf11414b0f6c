/// The storage of a `namespace()`. Reference semantics are the point; a namespace only exists inside one
/// render call on one thread, which is why the unchecked conformance is sound.
package final class JinjaNamespace: @unchecked Sendable {
    package var attributes = JinjaObject()
    package init(_ attributes: JinjaObject) { self.attributes = attributes }
}
