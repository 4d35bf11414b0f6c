import Catalog
import Foundation
import Hubs

/// What to pull: a repository on a hub at a revision, and which of its files.
package struct PullRequest: Sendable, Hashable {
    package var source: ModelSource
    package var repo: String
    /// A branch, tag or commit.
    package var revision: String
    package var selection: FileSelection

    /// - Parameter revision: nil means the hub's default branch (`main` on Hugging Face, `master` on ModelScope).
    package init(source: ModelSource = .huggingface, repo: String, revision: String? = nil, include: [String] = [], exclude: [String] = []) {
        self.source = source
        self.repo = repo
        self.revision = revision.flatMap { $0.isEmpty ? nil : $0 } ?? (source == .huggingface ? "main" : "master")
        self.selection = FileSelection(include: include, exclude: exclude)
    }

    /// Requests with the same key share one job.
    package var jobKey: String { "\(source.rawValue)\u{0}\(repo)\u{0}\(revision)" }

    /// Checks that the repository id is `owner/name` made of letters, digits, `.`, `_` and `-`, so that it
    /// can go into URLs and paths as it is.
    /// - Throws: ``PullError`` (`notFound`) naming the problem.
    package func validate() throws {
        let parts = repo.split(separator: "/", omittingEmptySubsequences: false)
        let valid =
            parts.count == 2
            && parts.allSatisfy { part in
                !part.isEmpty && part != "." && part != ".."
                    && part.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
            }
        guard valid else {
            throw PullError(.repoNotFound, "\"\(repo)\" is not a repository id of the form owner/name")
        }
    }
}
