import Catalog

/// What `verify` found.
package struct VerifyReport: Sendable, Hashable {
    /// One file that is missing or whose content changed.
    package struct Damage: Sendable, Hashable, CustomStringConvertible {
        package var path: String
        package var problem: String
        package var description: String { "\(path): \(problem)" }
    }

    package var source: ModelSource
    package var repo: String
    package var commit: String
    package var filesChecked: Int
    package var bytesChecked: Int64
    package var damage: [Damage]
    package var isIntact: Bool { damage.isEmpty }
}
