import Foundation

/// A model's chat template, rendering conversations into prompt text exactly as transformers'
/// `apply_chat_template(..., tokenize=False)` does.
package struct ChatTemplate: Sendable {
    package let source: String
    private let template: JinjaTemplate
    /// `bos_token` and `eos_token` as the template sees them (from tokenizer_config.json).
    package var bosToken: String?
    package var eosToken: String?

    /// - Throws: ``TemplateError`` for syntax the interpreter does not accept, with line and column.
    package init(source: String, bosToken: String? = nil, eosToken: String? = nil) throws {
        self.source = source
        self.template = try JinjaTemplate(source)
        self.bosToken = bosToken
        self.eosToken = eosToken
    }

    /// Loads the template of a model directory: `chat_template.jinja` if present, else `chat_template` in
    /// `tokenizer_config.json` (a string, or a list of `{name, template}` where `name` selects one,
    /// `"default"` by default). Special tokens come from `tokenizer_config.json`.
    /// - Throws: ``TemplateError`` `.missingTemplate` when there is none, or a parse error.
    package init(directory: URL, name: String = "default") throws {
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        let config = try Self.readConfig(configURL)
        let source: String
        if let data = try Self.readFile(directory.appendingPathComponent("chat_template.jinja")),
            let text = String(data: data, encoding: .utf8)
        {
            source = text
        } else if let text = try Self.namedTemplate(config["chat_template"], name: name) {
            source = text
        } else {
            throw TemplateError(
                .missingTemplate, "\(directory.path) has no chat_template.jinja and tokenizer_config.json has no chat_template: the model cannot chat"
            )
        }
        try self.init(source: source, bosToken: Self.tokenText(config["bos_token"]), eosToken: Self.tokenText(config["eos_token"]))
    }

    /// A model file's bytes, or nil when it is absent or unreadable.
    /// - Throws: ``TemplateError`` when it is larger than ``JSONLimits/maxFileBytes``.
    private static func readFile(_ url: URL) throws -> Data? {
        do {
            return try JSONLimits.readFile(url)
        } catch let error as JSONLimitError {
            throw TemplateError(.missingTemplate, error.message)
        } catch {
            return nil
        }
    }

    private static func readConfig(_ url: URL) throws -> JinjaObject {
        guard let data = try readFile(url) else { return JinjaObject() }
        guard case .object(let object) = try JinjaValue(json: data) else {
            throw TemplateError(.missingTemplate, "\(url.path) is not a JSON object")
        }
        return object
    }

    /// A special token as tokenizer_config.json writes it: a string or an `{"content": ...}` object.
    private static func tokenText(_ value: JinjaValue?) -> String? {
        switch value {
        case .string(let text)?: return text
        case .object(let token)?:
            if case .string(let text)? = token["content"] { return text }
            return nil
        default: return nil
        }
    }

    private static func nameAndTemplate(_ entry: JinjaValue) -> (name: String, template: String)? {
        guard case .object(let object) = entry else { return nil }
        guard case .string(let name)? = object["name"], case .string(let template)? = object["template"] else { return nil }
        return (name, template)
    }

    /// `chat_template` as a string, or the entry called `name` of a `[{name, template}]` list.
    @_optimize(none)  // Swift 6.3.1 LICM crashes optimizing this function.
    private static func namedTemplate(_ value: JinjaValue?, name: String) throws -> String? {
        switch value {
        case .string(let text)?:
            return text
        case .array(let entries)?:
            // (Written without a loop over enum patterns: Swift 6.3's LICM pass crashes on that shape here.)
            let named = entries.compactMap(Self.nameAndTemplate)
            if let match = named.first(where: { $0.name == name }) { return match.template }
            throw TemplateError(
                .missingTemplate, "tokenizer_config.json has no chat template named '\(name)' (it has \(named.map(\.name).joined(separator: ", ")))")
        default:
            return nil
        }
    }

    /// Renders a conversation.
    /// - Parameters:
    ///   - messages: `{role, content, ...}` mappings (`tool_calls`, `reasoning_content`... pass through).
    ///   - tools: JSON-schema tool definitions, or nil.
    ///   - addGenerationPrompt: end with the assistant header so the model answers.
    ///   - extra: further template variables (`enable_thinking`, `date_string`, ...).
    ///   - now: the time `strftime_now` formats, in `timeZone`.
    /// - Throws: ``TemplateError``: `.raised` when the template rejects the conversation.
    package func render(
        messages: [JinjaValue],
        tools: [JinjaValue]? = nil,
        addGenerationPrompt: Bool,
        extra: [String: JinjaValue] = [:],
        now: Date = Date(),
        timeZone: TimeZone = .current
    ) throws -> String {
        var variables: [String: JinjaValue] = [
            "messages": .array(messages),
            "add_generation_prompt": .bool(addGenerationPrompt),
        ]
        // transformers passes tools=None when there are none: defined, but none.
        variables["tools"] = tools.map(JinjaValue.array) ?? JinjaValue.none
        variables["documents"] = JinjaValue.none
        if let bosToken { variables["bos_token"] = .string(bosToken) }
        if let eosToken { variables["eos_token"] = .string(eosToken) }
        for (key, value) in extra { variables[key] = value }
        return try template.render(variables, now: now, timeZone: timeZone)
    }
}
