import Foundation
import ModelText
import ModeldAPI
import Synchronization

/// What `/api/tags`, `/api/ps` and `/api/show` say about a model, read from its files (docs/ollama-api.md,
/// Model details): `config.json` for the architecture and sizes, the safetensors headers for the parameter
/// count and the weights' type, the chat template for the capabilities, `generation_config.json` for the
/// default parameters. A file that is missing or unreadable leaves its facts out.
struct OllamaModelFacts: Sendable {
    /// `safetensors` or `gguf`.
    var format = ""
    /// `config.json`'s `model_type` (`qwen2`, `llama`).
    var family = ""
    var parameterCount: Int?
    /// `BF16`, `F16`, `F32`, a quantization method (`AWQ`, `GPTQ`), or a GGUF type from the file name (`Q4_K_M`).
    var quantizationLevel = ""
    var contextLength: Int?
    var embeddingLength: Int?
    /// `config.json`'s other sizes, under their GGUF names (`block_count`, `attention.head_count`, ...).
    var sizes: [(String, Int)] = []
    var template: String?
    /// Defaults from `generation_config.json`, in Ollama's Modelfile terms (`temperature 0.7`).
    var parameters: [(String, String)] = []
    var capabilities: [String] = []

    /// Ollama's `parameter_size`: `494.03M`, `7.6B`.
    var parameterSize: String { parameterCount.map(Self.humanNumber) ?? "" }

    /// `details` as Ollama writes it.
    var details: [String: Any] {
        [
            "parent_model": "", "format": format, "family": family, "families": family.isEmpty ? [String]() : [family],
            "parameter_size": parameterSize, "quantization_level": quantizationLevel,
        ]
    }

    /// `model_info`: `general.*` and `<architecture>.*` keys.
    var modelInfo: [String: Any] {
        var info: [String: Any] = ["general.architecture": family]
        if let parameterCount { info["general.parameter_count"] = parameterCount }
        guard !family.isEmpty else { return info }
        if let contextLength { info["\(family).context_length"] = contextLength }
        if let embeddingLength { info["\(family).embedding_length"] = embeddingLength }
        for (key, value) in sizes { info["\(family).\(key)"] = value }
        return info
    }

    /// Reads the facts of the model directory at `path`.
    init(path: String) {
        let directory = URL(filePath: path)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        let config = Self.jsonObject(directory.appending(path: "config.json"))
        // Multimodal models keep the language model's sizes in `text_config`.
        let text = (config["text_config"] as? [String: Any]) ?? config
        family = (config["model_type"] as? String) ?? (text["model_type"] as? String) ?? ""
        contextLength = text["max_position_embeddings"] as? Int
        embeddingLength = (text["hidden_size"] as? Int) ?? (text["d_model"] as? Int)
        let sizeKeys = [
            ("block_count", "num_hidden_layers"), ("attention.head_count", "num_attention_heads"),
            ("attention.head_count_kv", "num_key_value_heads"), ("feed_forward_length", "intermediate_size"), ("vocab_size", "vocab_size"),
        ]
        sizes = sizeKeys.compactMap { name, key in (text[key] as? Int).map { (name, $0) } }

        let weights = Self.weights(directory: directory, files: files, config: config)
        format = weights.format
        quantizationLevel = weights.quantizations.first ?? ""
        parameterCount = weights.parameterCount

        template = try? ChatTemplate(directory: directory).source
        let architectures = (config["architectures"] as? [String]) ?? []
        let generates = architectures.isEmpty || architectures.contains { $0.hasSuffix("ForCausalLM") || $0.hasSuffix("ForConditionalGeneration") }
        if generates { capabilities.append("completion") }
        if !generates || architectures.contains(where: { $0.hasSuffix("Model") }) { capabilities.append("embedding") }
        if let template, template.contains("tools") { capabilities.append("tools") }
        if let template, template.contains("<think>") || template.contains("enable_thinking") { capabilities.append("thinking") }
        if config["vision_config"] != nil { capabilities.append("vision") }

        let generation = Self.jsonObject(directory.appending(path: "generation_config.json"))
        let parameterKeys = [("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"), ("repetition_penalty", "repeat_penalty")]
        parameters = parameterKeys.compactMap { key, name in
            guard let value = generation[key] as? NSNumber else { return nil }
            return (name, "\(value)")
        }
    }

    /// The weights' format (`safetensors`, `gguf`, or empty), their types (the safetensors' main dtype or a
    /// quantization method; each GGUF file's type from its name, in file order) and, for safetensors, the
    /// parameter count; from the file names and safetensors headers of a model directory.
    static func weights(directory: URL, files: [String], config: [String: Any]) -> (format: String, quantizations: [String], parameterCount: Int?) {
        var result: (format: String, quantizations: [String], parameterCount: Int?) = ("", [], nil)
        let safetensors = files.filter { $0.hasSuffix(".safetensors") }.sorted()
        let ggufs = files.filter { $0.lowercased().hasSuffix(".gguf") }.sorted()
        if !ggufs.isEmpty {
            result.format = "gguf"
            result.quantizations = ggufs.map(ggufType)
        } else if !safetensors.isEmpty {
            result.format = "safetensors"
            var count = 0
            var bytesByType: [String: Int] = [:]
            let files = safetensors.map { try? SafetensorsFile(url: directory.appending(path: $0)) }
            if files.allSatisfy({ $0 != nil }) {
                for entry in files.compactMap({ $0 }).flatMap(\.entries.values) {
                    count += entry.shape.reduce(1, *)
                    bytesByType[entry.dtype.rawValue, default: 0] += entry.range.count
                }
                result.parameterCount = count
                result.quantizations = bytesByType.max { $0.value < $1.value }.map { [$0.key] } ?? []
            }
        }
        if let method = (config["quantization_config"] as? [String: Any])?["quant_method"] as? String {
            result.quantizations = [method.uppercased()]
        }
        return result
    }

    /// ``weights(directory:files:config:)`` of the model directory at `path`.
    static func weights(path: String) -> (format: String, quantizations: [String], parameterCount: Int?) {
        let directory = URL(filePath: path)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return weights(directory: directory, files: files, config: jsonObject(directory.appending(path: "config.json")))
    }

    /// `parameters` as Ollama writes them: one `name value` line each, the name padded to 30 columns.
    var parametersText: String {
        parameters.map { name, value in name.padding(toLength: max(30, name.count + 1), withPad: " ", startingAt: 0) + value }
            .joined(separator: "\n")
    }

    /// A count as Ollama shortens it: whole numbers without decimals, else one decimal for billions and two
    /// for millions; thousands rounded.
    static func humanNumber(_ count: Int) -> String {
        let value = Double(count)
        func format(_ number: Double, _ unit: String, decimals: Int) -> String {
            number == number.rounded(.down) ? "\(Int(number))\(unit)" : String(format: "%.\(decimals)f\(unit)", number)
        }
        switch count {
        case 1_000_000_000...: return format(value / 1e9, "B", decimals: 1)
        case 1_000_000...: return format(value / 1e6, "M", decimals: 2)
        case 1_000...: return String(format: "%.0fK", value / 1e3)
        default: return String(count)
        }
    }

    /// A GGUF file's type from its name, as hubs name them (`model-Q4_K_M.gguf`): the last `-` or `.` separated
    /// part before the extension, upper-cased; empty when the name has none.
    static func ggufType(_ fileName: String) -> String {
        let stem = fileName.dropLast(".gguf".count)
        let part = stem.split(whereSeparator: { $0 == "-" || $0 == "." }).last.map(String.init) ?? ""
        let upper = part.uppercased()
        let known = upper.hasPrefix("Q") || upper.hasPrefix("IQ") || ["F16", "BF16", "F32"].contains(upper)
        return known ? upper : ""
    }

    private static func jsonObject(_ url: URL) -> [String: Any] {
        guard let data = try? JSONLimits.readFile(url), let object = try? JSONLimits.jsonObject(with: data) as? [String: Any] else { return [:] }
        return object
    }
}

/// Facts per model directory, read once: a version's files do not change once it is ready.
final class OllamaFactsCache: Sendable {
    private let cache = Mutex<[String: OllamaModelFacts]>([:])

    func facts(_ path: String) -> OllamaModelFacts {
        if let known = cache.withLock({ $0[path] }) { return known }
        let facts = OllamaModelFacts(path: path)
        cache.withLock { $0[path] = facts }
        return facts
    }
}
