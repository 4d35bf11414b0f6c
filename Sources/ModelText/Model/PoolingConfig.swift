import Foundation

/// How an embedding model turns hidden states into one vector, from the files sentence-transformers writes:
/// `modules.json` lists the modules, the `Pooling` module's `config.json` (e.g. `1_Pooling/config.json`) picks
/// the pooling mode (`pooling_mode_lasttoken: true`, or `"pooling_mode": "lasttoken"` in newer files), and a `Normalize` module makes vectors unit length. Matryoshka truncation (`dimensions`) is
/// allowed when `config.json` says `is_matryoshka` or lists `matryoshka_dimensions` (docs/builtin-engine.md,
/// Embeddings).
package struct PoolingConfig: Sendable, Equatable {
    package enum Mode: String, Sendable {
        /// The last token's hidden state (`pooling_mode_lasttoken`: Qwen3-Embedding and other decoders).
        case lastToken
        /// The mean over all tokens (`pooling_mode_mean_tokens`).
        case mean
        /// The first token's (`pooling_mode_cls_token`).
        case first
    }

    package var mode: Mode
    package var normalizes: Bool
    package var matryoshka: Bool

    package init(mode: Mode, normalizes: Bool, matryoshka: Bool = false) {
        self.mode = mode
        self.normalizes = normalizes
        self.matryoshka = matryoshka
    }

    /// Reads the pooling of a model directory, or nil when it has no `modules.json` (not an embedding model).
    /// - Throws: ``ModelError`` for a malformed file or a pooling mode the engine does not implement.
    package init?(directory: URL) throws {
        let modulesURL = directory.appendingPathComponent("modules.json")
        guard FileManager.default.fileExists(atPath: modulesURL.path) else { return nil }
        func object(_ url: URL) throws -> Any {
            do {
                return try JSONLimits.jsonObject(with: JSONLimits.readFile(url))
            } catch {
                throw ModelError(.invalidConfig, "\(url.lastPathComponent) of \(directory.lastPathComponent) is not readable JSON", cause: error)
            }
        }
        guard let modules = try object(modulesURL) as? [[String: Any]] else {
            throw ModelError(.invalidConfig, "modules.json is not a list of modules")
        }
        let types = modules.map { ($0["type"] as? String ?? "").split(separator: ".").last.map(String.init) ?? "" }
        guard let poolingIndex = types.firstIndex(of: "Pooling"), let path = modules[poolingIndex]["path"] as? String else {
            throw ModelError(.invalidConfig, "modules.json has no Pooling module with a path")
        }
        guard let pooling = try object(directory.appendingPathComponent(path).appendingPathComponent("config.json")) as? [String: Any] else {
            throw ModelError(.invalidConfig, "\(path)/config.json is not a JSON object")
        }
        // Older files turn on one `pooling_mode_X` flag; newer ones say `"pooling_mode": "X"`.
        let modes: [String: Mode] = ["lasttoken": .lastToken, "mean_tokens": .mean, "mean": .mean, "cls_token": .first, "cls": .first]
        var names = pooling.keys.filter { $0.hasPrefix("pooling_mode_") && pooling[$0] as? Bool == true }.map {
            String($0.dropFirst("pooling_mode_".count))
        }
        if let name = pooling["pooling_mode"] as? String { names.append(name) }
        guard names.count == 1 else {
            throw ModelError(.invalidConfig, "\(path)/config.json must choose exactly one pooling mode (it names \(names.sorted()))")
        }
        guard let mode = modes[names[0]] else {
            throw ModelError(
                .invalidConfig,
                "\(path)/config.json asks for pooling mode \(names[0]), which the built-in engine does not implement (lasttoken, mean, cls)")
        }
        if pooling["include_prompt"] as? Bool == false {
            throw ModelError(.invalidConfig, "\(path)/config.json has include_prompt false, which the built-in engine does not implement")
        }
        let config = (try? object(directory.appendingPathComponent("config.json"))) as? [String: Any] ?? [:]
        self.init(
            mode: mode, normalizes: types.contains("Normalize"),
            matryoshka: config["is_matryoshka"] as? Bool == true || config["matryoshka_dimensions"] != nil)
    }

    /// The embedding of one sequence from its hidden states (one row per token for `mean`, else the row the
    /// mode picks), truncated to `dimensions` (Matryoshka), then normalized when the model says so.
    package func embedding(rows: [[Float]], dimensions: Int? = nil) -> [Float] {
        var vector: [Float]
        switch mode {
        case .lastToken, .first:
            vector = rows[0]
        case .mean:
            vector = [Float](repeating: 0, count: rows[0].count)
            for row in rows { for i in row.indices { vector[i] += row[i] } }
            let scale = 1 / Float(rows.count)
            for i in vector.indices { vector[i] *= scale }
        }
        if let dimensions, dimensions < vector.count { vector.removeLast(vector.count - dimensions) }
        if normalizes {
            // As torch.nn.functional.normalize: divide by max(norm, 1e-12).
            let norm = max(vector.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
            for i in vector.indices { vector[i] /= norm }
        }
        return vector
    }
}
