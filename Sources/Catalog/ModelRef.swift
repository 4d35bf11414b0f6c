import Foundation
import ModeldAPI

/// How a user names a model: a catalog ref (`qwen2.5:0.5b`) or a hub repository id (`Qwen/Qwen2.5-0.5B-Instruct`).
package enum ModelRef: Sendable, Hashable, CustomStringConvertible {
    /// `id:size` from the catalog; `size` is nil when the user gave the id alone.
    case catalog(id: String, size: String?)
    /// `owner/name` on a hub.
    case repo(String)

    /// Parses a reference. A `/` makes it a repository id; anything else is a catalog ref.
    /// - Throws: ``ModelRefError`` for empty or malformed input.
    package init(parsing text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else { throw ModelRefError(.malformed, input: text, problem: "is empty") }
        if trimmed.contains("/") {
            let parts = trimmed.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && Self.isRepoComponent($0) }) else {
                throw ModelRefError(.malformed, input: text, problem: "is not a repository id of the form owner/name")
            }
            self = .repo(trimmed)
            return
        }
        let parts = trimmed.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 2, parts.allSatisfy({ !$0.isEmpty }) else {
            throw ModelRefError(.malformed, input: text, problem: "is not a catalog ref of the form id:size (for example qwen2.5:0.5b)")
        }
        self = .catalog(id: parts[0].lowercased(), size: parts.count == 2 ? parts[1].lowercased() : nil)
    }

    package var description: String {
        switch self {
        case .catalog(let id, let size): size.map { "\(id):\($0)" } ?? id
        case .repo(let repo): repo
        }
    }

    private static func isRepoComponent(_ part: Substring) -> Bool {
        part != "." && part != ".."
            && part.unicodeScalars.allSatisfy { scalar in
                scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "._-".unicodeScalars.contains(scalar))
            }
    }
}

/// A model reference that could not be parsed or resolved.
package struct ModelRefError: Error, CustomStringConvertible, Equatable {
    /// What is wrong with the reference.
    package enum Code: String, Sendable {
        /// Not a reference at all: empty, or neither `id:size` nor `owner/name`.
        case malformed
        /// A catalog id the catalog does not have.
        case notInCatalog
        /// A catalog entry without the size asked for.
        case unknownSize
        /// A catalog entry without a repository on the hub asked for.
        case notOnHub
        /// A catalog id alone, for an entry with several sizes.
        case needsSize
    }

    package var code: Code
    package var input: String
    package var problem: String

    package init(_ code: Code, input: String, problem: String) {
        self.code = code
        self.input = input
        self.problem = problem
    }

    package var description: String { "model \"\(input)\" \(problem)" }
}

extension ModelRefError: APIErrorConvertible {
    /// An id the catalog does not have is a 404; anything else wrong with the reference a 400.
    package var apiError: APIError {
        APIError(status: code == .notInCatalog ? 404 : 400, code: code.rawValue, message: description, field: "model")
    }
}

/// The hub a model comes from.
package enum ModelSource: String, Sendable, Codable, CaseIterable {
    case huggingface
    case modelscope
}

/// A reference resolved to one hub repository.
package struct ResolvedModel: Sendable, Hashable {
    package var source: ModelSource
    package var repo: String
    /// The catalog entry and size when the reference matched the catalog.
    package var entry: CatalogEntry?
    package var size: CatalogSize?
}

extension ModelCatalog {
    /// Resolves a reference to a repository on `source`.
    /// - Throws: ``ModelRefError`` when a catalog ref names no entry or size, or the model has no repository on that hub.
    package func resolve(_ ref: ModelRef, source: ModelSource = .huggingface) throws -> ResolvedModel {
        switch ref {
        case .repo(let repo):
            let match = entry(forRepo: repo)
            return ResolvedModel(source: source, repo: repo, entry: match?.0, size: match?.1)
        case .catalog(let id, let sizeName):
            guard let entry = entry(id: id) else {
                throw ModelRefError(
                    .notInCatalog, input: ref.description,
                    problem: "is not in the catalog (known: \(entries.map(\.id).joined(separator: ", ")))")
            }
            let size: CatalogSize
            if let sizeName {
                guard let found = entry.sizes.first(where: { $0.size == sizeName }) else {
                    throw ModelRefError(
                        .unknownSize, input: ref.description,
                        problem: "has no size \"\(sizeName)\" (sizes: \(entry.sizes.map(\.size).joined(separator: ", ")))")
                }
                size = found
            } else if entry.sizes.count == 1 {
                size = entry.sizes[0]
            } else {
                throw ModelRefError(
                    .needsSize, input: ref.description,
                    problem: "needs a size: \(entry.sizes.map { "\(entry.id):\($0.size)" }.joined(separator: ", "))")
            }
            let repo: String
            switch source {
            case .huggingface: repo = size.hfRepo
            case .modelscope:
                guard let id = size.modelscopeID else {
                    throw ModelRefError(.notOnHub, input: ref.description, problem: "has no ModelScope repository in the catalog")
                }
                repo = id
            }
            return ResolvedModel(source: source, repo: repo, entry: entry, size: size)
        }
    }
}
