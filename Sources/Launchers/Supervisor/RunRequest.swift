import Foundation

/// A request to start a model on an engine.
package struct RunRequest: Sendable, Hashable {
    /// The run's id, when the caller needs to know it before the run is listed (``RunScheduler`` holds a place
    /// for it); nil picks a new one (``newID()``).
    package var id: String?
    /// A unique name for the run; nil picks one from the model and engine.
    package var name: String?
    /// The model as the user named it (`qwen2.5:0.5b`, `Qwen/Qwen2.5-0.5B-Instruct`), shown in listings.
    package var model: String
    /// The stored version being run, if any.
    package var versionID: Int64?
    package var spec: LaunchSpec
    /// Seconds without requests after which the run is unloaded; nil keeps it until stopped.
    package var keepAlive: Int?
    /// Whether the gateway starts it for a request (see ``RunRecord/onDemand``).
    package var onDemand: Bool

    package init(
        id: String? = nil, name: String? = nil, model: String, versionID: Int64? = nil, spec: LaunchSpec, keepAlive: Int? = nil,
        onDemand: Bool = false
    ) {
        self.id = id
        self.name = name
        self.model = model
        self.versionID = versionID
        self.spec = spec
        self.keepAlive = keepAlive
        self.onDemand = onDemand
    }

    /// A new run id: `r` and 11 hexadecimal digits.
    package static func newID() -> String {
        "r" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(11).lowercased()
    }
}
