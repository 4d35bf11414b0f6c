import Catalog
import Downloads
import Foundation
import HTTPTypes
import Hubs
import ModelStore
import ModeldAPI
import Synchronization

/// The local models as Ollama lists them (docs/ollama-api.md, Names): every ready version under a name, and
/// the names `/api/copy` made.
///
/// The newest ready version of a repository is listed as its catalog ref or `owner/name:latest`; older ready
/// versions as `owner/name:<revision>` (their requested revision, or their commit's first 12 characters).
struct OllamaLibrary {
    /// One listed model.
    struct Model {
        var name: OllamaName
        var version: LocalVersion
        /// Names it also answers to: `owner/name:latest` (or its tag), its catalog ref, a copy's source.
        var otherNames: [OllamaName]
        /// What the run selection is asked for to serve it.
        var routeModel: String
    }

    let models: [Model]

    /// - Parameter versions: the store's versions, newest first.
    init(versions: [LocalVersion], catalog: ModelCatalog, aliases: [String: String]) {
        var listed: [Model] = []
        var seenRepos = Set<String>()
        for version in versions where version.version.state == .ready && version.version.path != nil {
            let repoKey = "\(version.model.source)/\(version.model.repo.lowercased())"
            let newest = seenRepos.insert(repoKey).inserted
            let repoName = OllamaName(model: version.model.repo, tag: newest ? OllamaName.latest : OllamaNames.versionTag(version))
            let name = newest ? OllamaNames.display(repo: version.model.repo, catalog: catalog) : repoName
            var others = [repoName, OllamaName(model: version.model.repo, tag: OllamaNames.versionTag(version))]
            others.removeAll { $0.key == name.key }
            listed.append(Model(name: name, version: version, otherNames: others, routeModel: version.model.repo))
        }
        for (alias, target) in aliases.sorted(by: { $0.key < $1.key }) {
            guard let targetName = try? OllamaName(parsing: target), let original = listed.first(where: { $0.answers(to: targetName) }),
                let aliasName = try? OllamaName(parsing: alias)
            else { continue }
            listed.append(Model(name: aliasName, version: original.version, otherNames: [], routeModel: original.routeModel))
        }
        models = listed
    }

    /// The model a name means, or nil.
    func find(_ name: OllamaName) -> Model? {
        models.first { $0.name.key == name.key } ?? models.first { $0.answers(to: name) }
    }
}

extension OllamaLibrary.Model {
    func answers(to name: OllamaName) -> Bool {
        self.name.key == name.key || otherNames.contains { $0.key == name.key }
    }
}

/// The names `/api/copy` made, each the name of another model, kept in `ollama-aliases.json` in the data
/// directory.
final class OllamaAliases: Sendable {
    private let file: URL
    private let names: Mutex<[String: String]>

    /// Reads the file; a missing or unreadable one is an empty list (an unreadable one is replaced on the next
    /// change).
    init(file: URL) {
        self.file = file
        let data = try? Data(contentsOf: file)
        names = Mutex(data.flatMap { try? JSONDecoder().decode([String: String].self, from: $0) } ?? [:])
    }

    /// Every alias and the name it stands for.
    var all: [String: String] { names.withLock { $0 } }

    /// Sets `alias` to stand for `target` (both as `model:tag`).
    func set(_ alias: OllamaName, to target: OllamaName) throws {
        try change { $0[alias.key] = target.description }
    }

    /// - Returns: whether `alias` was an alias.
    func remove(_ alias: OllamaName) throws -> Bool {
        var removed = false
        try change { names in removed = names.removeValue(forKey: alias.key) != nil }
        return removed
    }

    /// Removes every alias of `target`.
    func removeAll(pointingTo target: OllamaName) throws {
        try change { names in names = names.filter { (try? OllamaName(parsing: $0.value))?.key != target.key } }
    }

    private func change(_ body: (inout [String: String]) -> Void) throws {
        try names.withLock { names in
            var changed = names
            body(&changed)
            guard changed != names else { return }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(changed).write(to: file, options: .atomic)
            names = changed
        }
    }
}
