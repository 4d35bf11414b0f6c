import Foundation

/// Walks untyped catalog JSON, building typed entries and naming the exact path of the first problem.
struct CatalogValidator {
    private static var idPattern: Regex<Substring> { /^[a-z0-9][a-z0-9._-]*$/ }
    private static var repoPattern: Regex<Substring> { /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/ }

    mutating func validate(_ root: Any) throws -> [CatalogEntry] {
        guard let object = root as? [String: Any] else {
            throw CatalogError(location: "(root)", problem: "must be an object with a \"models\" array")
        }
        guard let rawModels = object["models"] else {
            throw CatalogError(location: "models", problem: "missing")
        }
        guard let models = rawModels as? [Any] else {
            throw CatalogError(location: "models", problem: "must be an array")
        }
        var entries: [CatalogEntry] = []
        var seenIDs: Set<String> = []
        for (index, rawModel) in models.enumerated() {
            let path = "models[\(index)]"
            let entry = try validateEntry(rawModel, path: path)
            guard seenIDs.insert(entry.id).inserted else {
                throw CatalogError(location: "\(path).id", problem: "duplicate id \"\(entry.id)\"")
            }
            entries.append(entry)
        }
        return entries
    }

    private func validateEntry(_ raw: Any, path: String) throws -> CatalogEntry {
        guard let object = raw as? [String: Any] else {
            throw CatalogError(location: path, problem: "must be an object")
        }
        let id = try string(object, "id", path: path)
        guard id.wholeMatch(of: Self.idPattern) != nil else {
            throw CatalogError(
                location: "\(path).id",
                problem: "\"\(id)\" must be lower-case letters, digits, '.', '_' or '-' (it is used in refs like \(id):SIZE)")
        }
        let engines = try stringArray(object, "engines", path: path)
        for (index, engine) in engines.enumerated() where !knownEngines.contains(engine) {
            throw CatalogError(
                location: "\(path).engines[\(index)]",
                problem: "unknown engine \"\(engine)\" (known: \(knownEngines.sorted().joined(separator: ", ")))")
        }
        // The earlier catalog format has no default_engine: the first engine listed is the default.
        let defaultEngine: String
        if object["default_engine"] == nil, let first = engines.first {
            defaultEngine = first
        } else {
            defaultEngine = try string(object, "default_engine", path: path)
        }
        guard engines.contains(defaultEngine) else {
            throw CatalogError(
                location: "\(path).default_engine",
                problem: "\"\(defaultEngine)\" is not one of this model's engines (\(engines.joined(separator: ", ")))")
        }
        guard let rawSizes = object["sizes"] else {
            throw CatalogError(location: "\(path).sizes", problem: "missing")
        }
        guard let sizeList = rawSizes as? [Any], !sizeList.isEmpty else {
            throw CatalogError(location: "\(path).sizes", problem: "must be a non-empty array")
        }
        var sizes: [CatalogSize] = []
        for (index, rawSize) in sizeList.enumerated() {
            let sizePath = "\(path).sizes[\(index)]"
            let size = try validateSize(rawSize, path: sizePath)
            if sizes.contains(where: { $0.size == size.size }) {
                throw CatalogError(location: "\(sizePath).size", problem: "duplicate size \"\(size.size)\"")
            }
            sizes.append(size)
        }
        return CatalogEntry(
            id: id,
            name: try string(object, "name", path: path),
            description: try string(object, "description", path: path),
            officialURL: try url(object, "official_url", path: path),
            sizes: sizes,
            quantizations: try stringArray(object, "quantizations", path: path),
            engines: engines,
            formats: try stringArray(object, "formats", path: path),
            defaultEngine: defaultEngine
        )
    }

    private func validateSize(_ raw: Any, path: String) throws -> CatalogSize {
        guard let object = raw as? [String: Any] else {
            throw CatalogError(location: path, problem: "must be an object")
        }
        // Sizes are lower case in refs (`qwen2.5:0.5b`); the earlier catalog format wrote them in any case (`0.5B`).
        let size = try string(object, "size", path: path).lowercased()
        guard size.wholeMatch(of: Self.idPattern) != nil else {
            throw CatalogError(location: "\(path).size", problem: "\"\(size)\" must be lower-case letters, digits, '.', '_' or '-'")
        }
        let hfRepo = try repo(object, "hf_repo", path: path, required: true)!
        return CatalogSize(
            size: size,
            hfRepo: hfRepo,
            modelscopeID: try repo(object, "modelscope_id", path: path, required: false),
            ollamaName: try optionalString(object, "ollama_name", path: path),
            ggufRepo: try repo(object, "gguf_repo", path: path, required: false)
        )
    }

    // MARK: Field readers

    private func string(_ object: [String: Any], _ key: String, path: String) throws -> String {
        guard let raw = object[key], !(raw is NSNull) else {
            throw CatalogError(location: "\(path).\(key)", problem: "missing")
        }
        guard let value = raw as? String, !isNumberOrBool(raw) else {
            throw CatalogError(location: "\(path).\(key)", problem: "must be a string")
        }
        guard !value.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw CatalogError(location: "\(path).\(key)", problem: "must not be empty")
        }
        return value
    }

    private func optionalString(_ object: [String: Any], _ key: String, path: String) throws -> String? {
        guard let raw = object[key], !(raw is NSNull) else { return nil }
        guard let value = raw as? String, !isNumberOrBool(raw) else {
            throw CatalogError(location: "\(path).\(key)", problem: "must be a string or null")
        }
        return value.isEmpty ? nil : value
    }

    private func repo(_ object: [String: Any], _ key: String, path: String, required: Bool) throws -> String? {
        let value = required ? try string(object, key, path: path) : try optionalString(object, key, path: path)
        guard let value else { return nil }
        guard value.wholeMatch(of: Self.repoPattern) != nil else {
            throw CatalogError(location: "\(path).\(key)", problem: "\"\(value)\" is not a repository id of the form owner/name")
        }
        return value
    }

    private func url(_ object: [String: Any], _ key: String, path: String) throws -> String {
        let value = try string(object, key, path: path)
        guard let parsed = URL(string: value), let scheme = parsed.scheme, ["http", "https"].contains(scheme),
            parsed.host != nil
        else {
            throw CatalogError(location: "\(path).\(key)", problem: "\"\(value)\" is not an http(s) URL")
        }
        return value
    }

    private func stringArray(_ object: [String: Any], _ key: String, path: String) throws -> [String] {
        guard let raw = object[key], !(raw is NSNull) else {
            throw CatalogError(location: "\(path).\(key)", problem: "missing")
        }
        guard let list = raw as? [Any] else {
            throw CatalogError(location: "\(path).\(key)", problem: "must be an array of strings")
        }
        return try list.enumerated().map { index, item in
            guard let value = item as? String, !isNumberOrBool(item) else {
                throw CatalogError(location: "\(path).\(key)[\(index)]", problem: "must be a string")
            }
            return value
        }
    }

    /// JSONSerialization bridges numbers and booleans to NSNumber, which can masquerade as other types.
    private func isNumberOrBool(_ value: Any) -> Bool {
        value is NSNumber && !(value is String)
    }
}
