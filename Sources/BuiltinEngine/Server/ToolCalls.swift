import Foundation
import ModelText

/// One function call parsed from a model's reply, as OpenAI's `tool_calls` entries carry it.
struct ToolCall: Equatable {
    var name: String
    /// The arguments as compact JSON text.
    var arguments: String

    /// The `tool_calls` entry of a reply, with a fresh id; a streamed delta's also carries the call's `index`.
    func json(index: Int?) -> [String: Any] {
        var entry: [String: Any] = [
            "id": "call_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24),
            "type": "function", "function": ["name": name, "arguments": arguments],
        ]
        if let index { entry["index"] = index }
        return entry
    }
}

/// How a chat template asks a model to write tool calls (docs/builtin-engine.md, Tool calls).
enum ToolCallFormat: Equatable {
    /// Qwen and Hermes: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, any number, amid text.
    case hermes
    /// Llama 3: the whole reply is `{"name": ..., "parameters": {...}}` (after an optional `<|python_tag|>`).
    case llamaJSON

    /// The format a template's text shows: Hermes tags when it mentions them, else Llama 3's JSON form.
    init(template: String) {
        self = template.contains("<tool_call>") ? .hermes : .llamaJSON
    }

    static let open = "<tool_call>", close = "</tool_call>", pythonTag = "<|python_tag|>"

    /// A grammar for exactly one call to one of `tools` (OpenAI function tools): for `tool_choice` `required`, or
    /// a named function.
    /// - Throws: ``SchemaError`` for a tool's parameters the engine cannot constrain to.
    func grammar(tools: [JinjaValue], only name: String?) throws -> JSONGrammar {
        var alternatives: [JinjaValue] = []
        for tool in tools {
            guard case .object(let object) = tool, case .object(let function)? = object["function"],
                case .string(let toolName)? = function["name"]
            else { continue }
            if let name, name != toolName { continue }
            let parameters = function["parameters"] ?? .object(JinjaObject(["type": .string("object")]))
            let argumentsKey = self == .hermes ? "arguments" : "parameters"
            let properties = JinjaObject(pairs: [("name", .object(JinjaObject(["const": .string(toolName)]))), (argumentsKey, parameters)])
            alternatives.append(
                .object(
                    JinjaObject([
                        "type": .string("object"), "properties": .object(properties),
                        "required": .array([.string("name"), .string(argumentsKey)]),
                    ])))
        }
        guard !alternatives.isEmpty else { throw SchemaError(name.map { "no tool is named \"\($0)\"" } ?? "tools has no function") }
        let schema: JinjaValue = alternatives.count == 1 ? alternatives[0] : .object(JinjaObject(["anyOf": .array(alternatives)]))
        guard self == .hermes else { return try JSONGrammar(schema: schema) }
        return try JSONGrammar(schema: schema, prefix: Self.open + "\n", suffix: "\n" + Self.close)
    }
}

/// Splits a reply into text and tool calls as it streams: text is passed on at once, except what may be the start
/// of a tool call, which is held until it is known; a call is emitted when it is complete. Text that looks like a
/// call but does not parse as one is passed on as text.
struct ToolCallParser {
    enum Event: Equatable {
        case content(String)
        case call(ToolCall)
    }

    let format: ToolCallFormat
    private var held = ""
    private var inCall = false
    /// Llama 3: whether the reply so far is only whitespace, and whether it began a JSON object (held to the end).
    private var sawText = false
    private var holdingJSON = false
    private(set) var calls = 0

    init(format: ToolCallFormat) {
        self.format = format
    }

    mutating func feed(_ text: String) -> [Event] {
        held += text
        switch format {
        case .hermes: return scanHermes(final: false)
        case .llamaJSON:
            if holdingJSON { return [] }
            if !sawText {
                let trimmed = held.drop { $0.isWhitespace }
                if trimmed.isEmpty { return [] }
                if ToolCallFormat.pythonTag.hasPrefix(trimmed) && trimmed.count < ToolCallFormat.pythonTag.count { return [] }
                sawText = true
                if trimmed.hasPrefix("{") || trimmed.hasPrefix(ToolCallFormat.pythonTag) {
                    holdingJSON = true
                    return []
                }
            }
            defer { held = "" }
            return [.content(held)]
        }
    }

    /// The end of the reply: whatever is held, as a call if it is one, else as text.
    mutating func finish() -> [Event] {
        switch format {
        case .hermes:
            return scanHermes(final: true)
        case .llamaJSON:
            defer { held = "" }
            var body = Substring(held).drop { $0.isWhitespace }
            if body.hasPrefix(ToolCallFormat.pythonTag) { body = body.dropFirst(ToolCallFormat.pythonTag.count) }
            if holdingJSON, let call = Self.call(String(body), argumentsKeys: ["parameters", "arguments"]) {
                calls += 1
                return [.call(call)]
            }
            return held.isEmpty ? [] : [.content(held)]
        }
    }

    private mutating func scanHermes(final: Bool) -> [Event] {
        var events: [Event] = []
        while true {
            if inCall {
                guard let end = held.range(of: ToolCallFormat.close) else {
                    guard final else { return events }
                    // A call cut off before its closing tag still counts when its JSON is whole.
                    if let call = Self.call(held, argumentsKeys: ["arguments", "parameters"]) {
                        calls += 1
                        events.append(.call(call))
                    } else {
                        events.append(.content(ToolCallFormat.open + held))
                    }
                    held = ""
                    inCall = false
                    return events
                }
                let body = String(held[..<end.lowerBound])
                if let call = Self.call(body, argumentsKeys: ["arguments", "parameters"]) {
                    calls += 1
                    events.append(.call(call))
                } else {
                    events.append(.content(ToolCallFormat.open + body + ToolCallFormat.close))
                }
                held = String(held[end.upperBound...])
                inCall = false
            } else if let start = held.range(of: ToolCallFormat.open) {
                let before = String(held[..<start.lowerBound])
                // Whitespace between calls is layout, not content.
                if !before.isEmpty && !(calls > 0 && before.allSatisfy(\.isWhitespace)) { events.append(.content(before)) }
                held = String(held[start.upperBound...])
                inCall = true
            } else {
                var keep = 0
                if !final {
                    for length in stride(from: min(ToolCallFormat.open.count - 1, held.count), to: 0, by: -1)
                    where held.hasSuffix(ToolCallFormat.open.prefix(length)) {
                        keep = length
                        break
                    }
                }
                let text = String(held.dropLast(keep))
                if calls > 0 && text.allSatisfy(\.isWhitespace) {
                    // After a call, whitespace is held until text follows it; at the end it is dropped.
                    if final { held = "" }
                    return events
                }
                held = String(held.suffix(keep))
                if !text.isEmpty { events.append(.content(text)) }
                return events
            }
        }
    }

    /// A call from JSON text `{"name": "...", "arguments": {...}}` (or the arguments as JSON text), else nil.
    static func call(_ text: String, argumentsKeys: [String]) -> ToolCall? {
        guard case .object(let object)? = try? JinjaValue(json: Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)),
            case .string(let name)? = object["name"], !name.isEmpty
        else { return nil }
        var options = JinjaValue.JSONOptions()
        options.separators = (",", ":")
        for key in argumentsKeys {
            switch object[key] {
            case .object(let arguments)?:
                guard let json = try? JinjaValue.object(arguments).pythonJSON(options) else { return nil }
                return ToolCall(name: name, arguments: json)
            case .string(let json)?:
                guard case .object? = try? JinjaValue(json: Array(json.utf8)) else { return nil }
                return ToolCall(name: name, arguments: json)
            default: continue
            }
        }
        return object.keys.count == 1 ? ToolCall(name: name, arguments: "{}") : nil
    }
}
