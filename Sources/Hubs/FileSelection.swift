import Foundation

/// Which files of a repository a pull takes.
///
/// `include` and `exclude` are shell globs matched against the whole path the way huggingface_hub's
/// `allow_patterns`/`ignore_patterns` are (`fnmatch`: `*` also crosses `/`); a pattern ending in `/`
/// means everything below that directory. When a directory holds `.safetensors` weights, the
/// `.bin`/`.pth`/`.pt` files beside it are the same weights in another format and are skipped, unless an
/// `include` pattern names them.
package struct FileSelection: Sendable, Hashable {
    package var include: [String]
    package var exclude: [String]

    package init(include: [String] = [], exclude: [String] = []) {
        self.include = include
        self.exclude = exclude
    }

    /// The chosen paths, in input order.
    package func choose(_ paths: [String]) -> [String] {
        let filtered = paths.filter { path in
            (include.isEmpty || include.contains { Self.matches($0, path) }) && !exclude.contains { Self.matches($0, path) }
        }
        let safetensorDirectories = Set(filtered.filter { $0.hasSuffix(".safetensors") }.map(Self.directory))
        let duplicateExtensions = [".bin", ".pth", ".pt"]
        return filtered.filter { path in
            guard duplicateExtensions.contains(where: { path.hasSuffix($0) }),
                safetensorDirectories.contains(Self.directory(of: path))
            else { return true }
            // Kept only when the user asked for it by a pattern that is not a catch-all.
            return include.contains { $0 != "*" && Self.matches($0, path) }
        }
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    static func matches(_ pattern: String, _ path: String) -> Bool {
        var pattern = pattern
        if pattern.hasSuffix("/") { pattern += "*" }
        return fnmatch(pattern, path, 0) == 0
    }
}
