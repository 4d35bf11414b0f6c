import Catalog
import Downloads
import Foundation
import Hummingbird
import Launchers
import ModelStore
import ModelText
import ModeldAPI

/// Where a run that asks for a quantization gets its weights (docs/quantization.md).
enum RunWeights: Equatable {
    /// The safetensors as stored (`bf16`, `f16`, `f32` on the built-in engine, which computes in f32 anyway).
    case asStored
    /// The built-in engine quantizes the safetensors on load (`q8_0`, `q4_0`).
    case onLoad(String)
    /// The file of that quantization in a Hugging Face repository of GGUF files.
    case ggufFile(repo: String, quantization: String)
}

extension RunsController {
    /// The float types a safetensors checkpoint is stored in: asking for one runs the checkpoint as it is.
    static let storedTypes: Set<String> = ["bf16", "f16", "f32"]

    /// How a run of `resolved` on `engine` gets `quantization`: a catalog model must offer it; the built-in engine
    /// runs a float type as stored; a model with a GGUF repository (and every model on llama.cpp) loads that
    /// repository's file of the quantization; otherwise the built-in engine quantizes on load.
    /// - Throws: ``APIError`` 400 naming what is offered or possible.
    static func weights(for quantization: String, of resolved: ResolvedModel, engine: EngineKind, source: ModelSource, model: String) throws
        -> RunWeights
    {
        let name = quantization.lowercased()
        if let entry = resolved.entry, !entry.quantizations.contains(where: { $0.lowercased() == name }) {
            throw APIError.badRequest(
                "\(model) is not offered in quantization \"\(quantization)\"; the catalog offers \(entry.quantizations.joined(separator: ", "))",
                field: "quantization")
        }
        guard engine == .builtin || engine == .llamacpp else {
            throw APIError.badRequest(
                "quantization chooses the weights of the builtin and llamacpp engines; \(engine.rawValue) runs the checkpoint as published",
                field: "quantization")
        }
        let onLoad = GGMLType.onLoad.map { $0.description.lowercased() }
        if engine == .builtin, storedTypes.contains(name) { return .asStored }
        if engine == .llamacpp { return .ggufFile(repo: resolved.repo, quantization: name) }
        if source == .huggingface, let ggufRepo = resolved.size?.ggufRepo { return .ggufFile(repo: ggufRepo, quantization: name) }
        guard onLoad.contains(name) else {
            throw APIError.badRequest(
                "\(quantization) needs a GGUF file and \(model) has no GGUF repository (gguf_repo) in the catalog; "
                    + "the built-in engine quantizes on load to \(onLoad.joined(separator: " or ")), or start llamacpp on a GGUF repository",
                field: "quantization")
        }
        return .onLoad(name)
    }

    /// A ready version of `repo` holding the GGUF file of `quantization`, and that file (relative to the snapshot):
    /// the newest local one that has it, else pulled now (the file alone, with the files the newest version had).
    /// - Throws: ``APIError`` 404 naming the quantizations the repository has when none matches; a pull's error.
    func ggufVersion(repo: String, quantization: String, revision: String?) async throws -> (LocalVersion, String) {
        func local() async throws -> (LocalVersion, String)? {
            let versions = try await store.versions(source: ModelSource.huggingface.rawValue, repo: repo)
            for version in versions where version.version.state == .ready {
                if let revision, !revision.isEmpty, version.version.commit != revision, version.version.requestedRevision != revision {
                    continue
                }
                let files = version.version.path.flatMap { try? FileManager.default.contentsOfDirectory(atPath: $0) } ?? []
                if let file = Self.ggufFile(quantization, among: files) { return (version, file) }
            }
            return nil
        }
        if let found = try await local() { return found }
        let files = try await pulls.listHuggingFaceFiles(repo: repo, revision: revision)
        guard let file = Self.ggufFile(quantization, among: files) else {
            let offered = Set(files.filter { $0.lowercased().hasSuffix(".gguf") }.map { Self.ggufType($0) }.filter { !$0.isEmpty }).sorted()
            throw APIError.notFound(
                "\(repo) has no GGUF file of quantization \(quantization)"
                    + (offered.isEmpty ? " (it holds no GGUF files)" : " (it has \(offered.joined(separator: ", ")))"))
        }
        // The files the newest version already has stay part of it.
        var include = [file]
        if let newest = try await store.versions(source: ModelSource.huggingface.rawValue, repo: repo).first(where: { $0.version.state == .ready }),
            let id = newest.version.id
        {
            include += try await store.files(versionID: id).map(\.path)
        }
        let job = pulls.pull(PullRequest(source: .huggingface, repo: repo, revision: revision, include: include))
        pullEvents.watch(job)
        _ = try await job.result()
        guard let found = try await local() else {
            throw APIError(.conflict, "the pull of \(repo) finished without \(file); pull it again")
        }
        return found
    }

    /// The file of `quantization` among repository paths: a `.gguf` file whose name ends in the quantization
    /// (`qwen2.5-0.5b-instruct-q4_k_m.gguf` is `q4_k_m`), compared without case; not a projector (`mmproj`) or a
    /// part of a split model. The first in path order when several match.
    static func ggufFile(_ quantization: String, among paths: [String]) -> String? {
        paths.filter { path in
            let name = path.split(separator: "/").last.map(String.init) ?? path
            return name.lowercased().hasSuffix(".gguf") && !name.lowercased().hasPrefix("mmproj")
                && ggufType(name) == quantization.lowercased()
        }.sorted().first
    }

    /// A GGUF file's quantization from its name, lower-cased (empty when the name carries none).
    static func ggufType(_ path: String) -> String {
        OllamaModelFacts.ggufType(path.split(separator: "/").last.map(String.init) ?? path).lowercased()
    }
}
