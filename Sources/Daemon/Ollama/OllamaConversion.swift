import Catalog
import Downloads
import Foundation
import HTTPTypes
import Hubs
import ModelStore
import ModeldAPI

/// Ollama's requests in OpenAI's terms and the engines' OpenAI replies in Ollama's (docs/ollama-api.md, Chat
/// and generate).
enum OllamaConversion {
    /// `options` that become OpenAI fields, and the field each becomes.
    static let mappedOptions: [String: String] = [
        "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p", "num_predict": "max_tokens",
        "stop": "stop", "seed": "seed", "repeat_penalty": "repetition_penalty", "presence_penalty": "presence_penalty",
        "frequency_penalty": "frequency_penalty",
    ]

    /// The OpenAI sampling fields of Ollama's `options`; options with no OpenAI counterpart (`num_ctx`,
    /// `num_keep`, `typical_p`, `repeat_last_n`, `num_gpu`, ...) are left out.
    /// - Throws: ``OllamaError`` (400) when `options` is not an object or a mapped option has the wrong type.
    static func samplingFields(_ options: Any?) throws(OllamaError) -> [String: Any] {
        guard let options else { return [:] }
        if options is NSNull { return [:] }
        guard let options = options as? [String: Any] else { throw OllamaError(.badRequest, "options must be an object") }
        var fields: [String: Any] = [:]
        for (name, value) in options {
            guard let field = mappedOptions[name], !(value is NSNull) else { continue }
            switch name {
            case "stop":
                guard let stops = (value as? [Any])?.compactMap({ $0 as? String }) ?? (value as? String).map({ [$0] }) else {
                    throw OllamaError(.badRequest, "option stop must be a list of strings")
                }
                fields[field] = stops
            case "num_predict", "top_k", "seed":
                guard let number = OllamaJSON.number(value) else { throw OllamaError(.badRequest, "option \(name) must be a number") }
                // A negative num_predict (-1 endless, -2 until the context is full) is the engine's default.
                if name == "num_predict" && number.intValue < 0 { continue }
                fields[field] = number.intValue
            default:
                guard let number = OllamaJSON.number(value) else { throw OllamaError(.badRequest, "option \(name) must be a number") }
                fields[field] = number.doubleValue
            }
        }
        return fields
    }

    /// A `keep_alive` as Ollama reads it: a number of seconds or a Go duration (`5m`, `1h30m`, `-1s`); negative
    /// means forever. Nil when absent.
    /// - Throws: ``OllamaError`` (400) for anything else.
    static func keepAlive(_ value: Any?) throws(OllamaError) -> KeepAlive? {
        switch value {
        case nil, is NSNull: return nil
        case let value? where OllamaJSON.number(value) != nil:
            let seconds = OllamaJSON.number(value)!.doubleValue
            return seconds < 0 ? .never : .seconds(Int(seconds.rounded(.up)))
        case let text as String:
            guard let seconds = goDuration(text) else {
                throw OllamaError(.badRequest, "keep_alive \"\(text)\" is not a duration (such as 5m, 1h30m, 300s, or -1 for ever)")
            }
            return seconds < 0 ? .never : .seconds(Int(seconds.rounded(.up)))
        default:
            throw OllamaError(.badRequest, "keep_alive must be a number of seconds or a duration string")
        }
    }

    /// Seconds of a Go duration: a sign, then numbers each with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`);
    /// `0` alone is allowed. Nil when the text is not one.
    static func goDuration(_ text: String) -> Double? {
        var rest = Substring(text)
        var sign = 1.0
        if rest.first == "-" || rest.first == "+" {
            sign = rest.first == "-" ? -1 : 1
            rest = rest.dropFirst()
        }
        if rest == "0" { return 0 }
        guard !rest.isEmpty else { return nil }
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("μs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) && !(($0.0 == "m") && rest.hasPrefix("ms")) }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        return sign * total
    }

    /// `format` as OpenAI's `response_format`: `"json"` is JSON mode, an object a JSON schema; nil when absent
    /// or empty.
    /// - Throws: ``OllamaError`` (400) for any other value.
    static func responseFormat(_ format: Any?) throws(OllamaError) -> [String: Any]? {
        switch format {
        case nil, is NSNull: return nil
        case let text as String where text.isEmpty: return nil
        case let text as String where text == "json": return ["type": "json_object"]
        case let schema as [String: Any]: return ["type": "json_schema", "json_schema": ["name": "output", "schema": schema]]
        default: throw OllamaError(.badRequest, "format must be \"json\" or a JSON schema object")
        }
    }

    /// Ollama's chat messages as OpenAI's: `images` become image parts, `tool_calls` get their arguments as JSON
    /// text, `tool_name` becomes `name`.
    /// - Throws: ``OllamaError`` (400) for a malformed message.
    static func messages(_ value: Any?) throws(OllamaError) -> [[String: Any]] {
        guard let list = value as? [Any] else {
            if value == nil || value is NSNull { return [] }
            throw OllamaError(.badRequest, "messages must be a list")
        }
        var messages: [[String: Any]] = []
        for item in list {
            guard var message = item as? [String: Any], message["role"] is String else {
                throw OllamaError(.badRequest, "each message must be an object with a role")
            }
            if let images = message.removeValue(forKey: "images") as? [Any], !images.isEmpty {
                var parts: [[String: Any]] = [["type": "text", "text": message["content"] as? String ?? ""]]
                for image in images {
                    guard let data = image as? String else { throw OllamaError(.badRequest, "images must be base64 strings") }
                    parts.append(["type": "image_url", "image_url": ["url": "data:image/png;base64,\(data)"]])
                }
                message["content"] = parts
            }
            if let calls = message["tool_calls"] as? [[String: Any]] {
                message["tool_calls"] = calls.enumerated().map { index, call in
                    var function = call["function"] as? [String: Any] ?? [:]
                    if let arguments = function["arguments"], !(arguments is String) {
                        function["arguments"] = jsonText(arguments)
                    }
                    function["index"] = nil
                    return ["id": call["id"] as? String ?? "call_\(index)", "type": "function", "function": function]
                }
            }
            if let toolName = message.removeValue(forKey: "tool_name") as? String { message["name"] = toolName }
            message["thinking"] = nil
            messages.append(message)
        }
        return messages
    }

    /// Whether any message carries images.
    static func hasImages(_ messages: Any?) -> Bool {
        (messages as? [[String: Any]])?.contains { ($0["images"] as? [Any])?.isEmpty == false } ?? false
    }

    /// OpenAI's tool calls in Ollama's terms: arguments as an object (parsed from their JSON text).
    static func toolCalls(_ calls: [[String: Any]]) -> [[String: Any]] {
        calls.enumerated().map { index, call in
            let function = call["function"] as? [String: Any] ?? [:]
            var arguments: Any = [String: Any]()
            if let text = function["arguments"] as? String, let parsed = try? JSONSerialization.jsonObject(with: Data(text.utf8)) {
                arguments = parsed
            } else if let object = function["arguments"] as? [String: Any] {
                arguments = object
            }
            var converted: [String: Any] = ["function": ["index": index, "name": function["name"] as? String ?? "", "arguments": arguments]]
            if let id = call["id"] as? String { converted["id"] = id }
            return converted
        }
    }

    /// Ollama's `done_reason` for an OpenAI `finish_reason`.
    static func doneReason(_ finishReason: String?) -> String {
        switch finishReason {
        case "length": "length"
        default: "stop"
        }
    }

    private static func jsonText(_ value: Any) -> String {
        guard JSONSerialization.isValidJSONObject([value]), let data = try? JSONSerialization.data(withJSONObject: value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// An engine's streamed OpenAI reply, read chunk by chunk: the text, thinking and tool calls of each chunk, and at
/// the end the finish reason and the engine's token counts.
struct OpenAIStreamReader {
    enum Kind {
        /// `/v1/chat/completions`: `choices[0].delta`.
        case chat
        /// `/v1/completions`: `choices[0].text`.
        case completion
    }

    /// What one chunk brought.
    struct Delta {
        var content = ""
        var thinking = ""
    }

    let kind: Kind
    private(set) var finishReason: String?
    private(set) var promptTokens: Int?
    private(set) var completionTokens: Int?
    /// Tool calls as they were assembled from their streamed pieces, by index.
    private var calls: [Int: [String: Any]] = [:]

    init(kind: Kind) { self.kind = kind }

    /// The tool calls of the whole reply, in Ollama's terms.
    var toolCalls: [[String: Any]] {
        OllamaConversion.toolCalls(calls.keys.sorted().compactMap { calls[$0] })
    }

    /// Reads one event's payload.
    /// - Throws: ``OllamaError`` (502) for a chunk that is not JSON, or the engine's error.
    mutating func read(_ payload: String) throws(OllamaError) -> Delta {
        guard let object = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any] else {
            throw OllamaError(.badGateway, "the engine sent a chunk that is not JSON: \(payload.prefix(200))")
        }
        if let error = object["error"] {
            let message = ((error as? [String: Any])?["message"] as? String) ?? (error as? String) ?? "\(error)"
            throw OllamaError(.internalServerError, message)
        }
        if let usage = object["usage"] as? [String: Any] {
            promptTokens = usage["prompt_tokens"] as? Int ?? promptTokens
            completionTokens = usage["completion_tokens"] as? Int ?? completionTokens
        }
        guard let choice = (object["choices"] as? [[String: Any]])?.first else { return Delta() }
        if let reason = choice["finish_reason"] as? String { finishReason = reason }
        switch kind {
        case .completion:
            return Delta(content: choice["text"] as? String ?? "")
        case .chat:
            let delta = choice["delta"] as? [String: Any] ?? [:]
            for piece in delta["tool_calls"] as? [[String: Any]] ?? [] {
                let index = piece["index"] as? Int ?? calls.count
                var call = calls[index] ?? ["function": ["name": "", "arguments": ""]]
                if let id = piece["id"] as? String { call["id"] = id }
                var function = call["function"] as? [String: Any] ?? [:]
                let part = piece["function"] as? [String: Any] ?? [:]
                if let name = part["name"] as? String { function["name"] = (function["name"] as? String ?? "") + name }
                if let arguments = part["arguments"] as? String { function["arguments"] = (function["arguments"] as? String ?? "") + arguments }
                call["function"] = function
                calls[index] = call
            }
            let thinking = (delta["reasoning_content"] as? String) ?? (delta["reasoning"] as? String) ?? ""
            return Delta(content: delta["content"] as? String ?? "", thinking: thinking)
        }
    }
}
