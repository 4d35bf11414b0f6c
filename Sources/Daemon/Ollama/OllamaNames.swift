import Catalog
import Downloads
import Foundation
import HTTPTypes
import Hubs
import ModelStore
import ModeldAPI

/// A model name as Ollama clients write it, `model:tag` (docs/ollama-api.md, Names): the tag is `latest`
/// when left out. `model` may be a catalog id (`qwen2.5`, tag `0.5b`), a repository id (`owner/name`,
/// optionally behind a hub's host, `hf.co/owner/name`), or a run name.
struct OllamaName: CustomStringConvertible {
    var model: String
    var tag: String
    /// The hub a host prefix named (`hf.co/`, `huggingface.co/`, `modelscope.cn/`), if any.
    var source: ModelSource?
    /// The name as the client wrote it, for messages (Ollama quotes names as given).
    var given: String { givenText ?? description }
    private var givenText: String?

    static let latest = "latest"

    /// Hosts a name may start with, and the hub each stands for.
    private static let hosts: [(String, ModelSource)] = [
        ("hf.co/", .huggingface), ("huggingface.co/", .huggingface), ("www.modelscope.cn/", .modelscope), ("modelscope.cn/", .modelscope),
    ]

    /// - Throws: ``OllamaError`` (400) for an empty name or an empty tag.
    init(parsing text: String) throws(OllamaError) {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        for (host, source) in Self.hosts where rest.lowercased().hasPrefix(host) {
            rest = rest.dropFirst(host.count)
            self.source = source
            break
        }
        // The tag follows the last `:` of the last path component.
        let lastComponent = rest.lastIndex(of: "/").map { rest.index(after: $0) } ?? rest.startIndex
        if let colon = rest[lastComponent...].lastIndex(of: ":") {
            model = String(rest[..<colon])
            tag = String(rest[rest.index(after: colon)...])
            guard !tag.isEmpty else { throw OllamaError(.badRequest, "invalid model name \"\(text)\": the tag after \":\" is empty") }
        } else {
            model = String(rest)
            tag = Self.latest
        }
        guard !model.isEmpty else { throw OllamaError(.badRequest, "model is required") }
        givenText = text
    }

    init(model: String, tag: String = OllamaName.latest, source: ModelSource? = nil) {
        self.model = model
        self.tag = tag
        self.source = source
    }

    var description: String { "\(model):\(tag)" }

    /// Whether the name is a repository id (`owner/name`).
    var isRepository: Bool { model.contains("/") }

    var isLatest: Bool { tag.lowercased() == Self.latest }

    /// What the daemon's run selection is asked for: a catalog ref keeps its size (`qwen2.5:0.5b`); a repository
    /// id or a run name drops the tag (the newest ready version of a repository answers every tag).
    var routeModel: String {
        isRepository || isLatest ? model : "\(model):\(tag)"
    }

    /// The same name with case folded, for comparing (Ollama's names are case-insensitive).
    var key: String { description.lowercased() }
}

/// How models are named in Ollama replies (docs/ollama-api.md, Names).
enum OllamaNames {
    /// The name a local repository is listed under: its catalog ref when the catalog has it, else
    /// `owner/name:latest`.
    static func display(repo: String, catalog: ModelCatalog) -> OllamaName {
        if let (entry, size) = catalog.entry(forRepo: repo) { return OllamaName(model: entry.id, tag: size.size) }
        return OllamaName(model: repo)
    }

    /// The name a run is listed under: its model's display name; a run started from a catalog ref or a
    /// repository is named like the repository.
    static func display(runModel: String, catalog: ModelCatalog) -> OllamaName {
        if let ref = try? ModelRef(parsing: runModel), let resolved = try? catalog.resolve(ref) {
            return display(repo: resolved.repo, catalog: catalog)
        }
        return OllamaName(model: runModel)
    }

    /// A version's tag when it is not the newest of its repository: its requested revision, or its commit's
    /// first 12 characters when that revision was `main`.
    static func versionTag(_ version: LocalVersion) -> String {
        let revision = version.version.requestedRevision
        return revision.isEmpty || revision == "main" ? String(version.version.commit.prefix(12)) : revision
    }
}
