/// The body of a pull request to the daemon (`POST /api/v1/pull`).
package struct PullRequestBody: Codable, Sendable, Hashable {
    /// A catalog ref or `owner/name`.
    package var model: String
    /// `huggingface` (default) or `modelscope`.
    package var source: String?
    /// Branch, tag or commit (default `main` on Hugging Face, `master` on ModelScope).
    package var revision: String?
    /// Glob patterns of files to take (default: all) and to leave out.
    package var include: [String]?
    package var exclude: [String]?

    package init(model: String, source: String? = nil, revision: String? = nil, include: [String]? = nil, exclude: [String]? = nil) {
        self.model = model
        self.source = source
        self.revision = revision
        self.include = include
        self.exclude = exclude
    }
}
