/// A callable value.
package struct JinjaFunction: Sendable {
    package var name: String
    /// The receiver of a bound method (boxed in an array: a value cannot contain itself inline).
    private var boxedReceiver: [JinjaValue]
    package var receiver: JinjaValue? { boxedReceiver.first }
    package init(name: String, receiver: JinjaValue? = nil) {
        self.name = name
        self.boxedReceiver = receiver.map { [$0] } ?? []
    }
}
