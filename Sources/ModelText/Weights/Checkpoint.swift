import Foundation

/// A Hugging Face model directory's weights: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists.
package final class Checkpoint: WeightSource, @unchecked Sendable {
    package let files: [SafetensorsFile]
    private let fileForTensor: [String: Int]

    /// Maps every weight file of `directory`.
    /// - Throws: ``ModelError`` when no weights are found or a file is invalid.
    package init(directory: URL) throws {
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        let single = directory.appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: index.path) {
            let object: Any
            do {
                object = try JSONLimits.jsonObject(with: JSONLimits.readFile(index))
            } catch {
                throw ModelError(.invalidConfig, "cannot read \(index.path)", cause: error)
            }
            guard let map = (object as? [String: Any])?["weight_map"] as? [String: String] else {
                throw ModelError(.invalidConfig, "\(index.path) has no weight_map object")
            }
            var files: [SafetensorsFile] = []
            var position: [String: Int] = [:]
            for name in Set(map.values).sorted() {
                guard !name.contains("/"), name != "..", name != "." else {
                    throw ModelError(.invalidConfig, "\(index.path) names a shard outside the model directory: \(name)")
                }
                position[name] = files.count
                files.append(try SafetensorsFile(url: directory.appendingPathComponent(name)))
            }
            var fileForTensor: [String: Int] = [:]
            for (tensor, name) in map {
                guard let file = position[name], files[file].entries[tensor] != nil else {
                    throw ModelError(.invalidTensor, "\(index.lastPathComponent) puts \(tensor) in \(name), which has no such tensor")
                }
                fileForTensor[tensor] = file
            }
            self.files = files
            self.fileForTensor = fileForTensor
        } else if FileManager.default.fileExists(atPath: single.path) {
            let file = try SafetensorsFile(url: single)
            self.files = [file]
            self.fileForTensor = file.entries.mapValues { _ in 0 }
        } else {
            throw ModelError(.unreadableFile, "\(directory.path) has neither model.safetensors nor model.safetensors.index.json")
        }
    }

    package var tensorNames: [String] { fileForTensor.keys.sorted() }

    /// The tensor called `name`; a base model's checkpoint (embedding models such as Qwen3-Embedding, saved
    /// without the language-model head) answers `model.X` with its tensor `X`.
    package func tensor(named name: String) -> TensorView? {
        let stored = fileForTensor[name] == nil && name.hasPrefix("model.") ? String(name.dropFirst("model.".count)) : name
        guard let file = fileForTensor[stored] else { return nil }
        return files[file].tensor(named: stored)
    }
}
