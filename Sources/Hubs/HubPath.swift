import Foundation

/// A file name from a hub, checked to be a safe relative path before it touches the disk.
///
/// Refused: empty names, absolute paths, `.` or `..` components, empty components (`a//b`), NUL and
/// backslash. Escapes through symlinks already on disk are refused when linking (``HuggingFaceCache``).
package struct HubPath: Sendable, Hashable, CustomStringConvertible, Comparable {
    package let value: String

    /// - Throws: ``PullError`` with code ``PullError/Code/unsafePath``.
    package init(_ value: String, repo: String) throws {
        func refuse(_ why: String) -> PullError {
            let shown = value.replacingOccurrences(of: "\0", with: "\\0")
            return PullError(.unsafePath, "refusing file name \"\(shown)\" from \(repo): \(why)")
        }
        guard !value.isEmpty else { throw refuse("it is empty") }
        guard !value.contains("\0") else { throw refuse("it contains a NUL byte") }
        guard !value.contains("\\") else { throw refuse("it contains a backslash") }
        guard !value.hasPrefix("/") else { throw refuse("it is an absolute path") }
        let components = value.split(separator: "/", omittingEmptySubsequences: false)
        for component in components {
            if component == ".." { throw refuse("it contains a .. component") }
            if component == "." { throw refuse("it contains a . component") }
            if component.isEmpty { throw refuse("it contains an empty component") }
        }
        self.value = value
    }

    /// The path components (at least one).
    package var components: [Substring] { value.split(separator: "/") }

    /// How many directories deep the file sits (0 for a top-level file).
    package var depth: Int { components.count - 1 }

    package var description: String { value }

    package static func < (lhs: HubPath, rhs: HubPath) -> Bool { lhs.value < rhs.value }
}
