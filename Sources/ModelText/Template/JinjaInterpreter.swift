import Foundation

/// Renders parsed templates with Jinja's semantics as transformers configures them (default `Undefined`,
/// loop controls, the `raise_exception`/`strftime_now` globals, Python-style values and errors).
package struct JinjaInterpreter {
    /// What a statement asks the enclosing loop to do.
    enum Flow {
        case normal, breakLoop, continueLoop
    }

    /// Variable scopes, innermost last. Loop bodies and macro calls push one; `if` does not (as in Jinja).
    var scopes: [[String: JinjaValue]]
    var output = ""
    /// Loop iterations so far (``TemplateLimits/maxIterations``).
    var iterations = 0
    /// Formats `strftime_now`.
    let now: Date
    let timeZone: TimeZone

    package init(variables: [String: JinjaValue], now: Date = Date(), timeZone: TimeZone = .current) {
        var globals: [String: JinjaValue] = [:]
        for name in ["raise_exception", "strftime_now", "namespace", "range", "dict"] {
            globals[name] = .function(JinjaFunction(name: name))
        }
        scopes = [globals, variables]
        self.now = now
        self.timeZone = timeZone
    }

    /// Renders `nodes` and returns the text.
    /// - Throws: ``TemplateError``: `.raised` for `raise_exception`, `.runtime`/`.unsupported` otherwise.
    package mutating func render(_ nodes: [JinjaNode]) throws -> String {
        output = ""
        iterations = 0
        _ = try execute(nodes)
        return output
    }

    // MARK: variables

    func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() {
            if let value = scope[name] { return value }
        }
        return .undefined(name)
    }

    mutating func assign(_ name: String, _ value: JinjaValue) {
        scopes[scopes.count - 1][name] = value
    }

    // MARK: statements

    mutating func execute(_ nodes: [JinjaNode]) throws -> Flow {
        for node in nodes {
            let flow = try execute(node)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private mutating func execute(_ node: JinjaNode) throws -> Flow {
        switch node {
        case .text(let text):
            try emit(text)
        case .output(let expression):
            try emit(try evaluate(expression).pythonString())
        case .ifBlock(let branches, let otherwise):
            for (condition, body) in branches where try evaluate(condition).isTruthy {
                return try execute(body)
            }
            return try execute(otherwise)
        case .forLoop(let targets, let iterable, let filter, let body, let otherwise):
            return try executeFor(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
        case .set(let targets, let attribute, let valueExpression):
            let value = try evaluate(valueExpression)
            if let attribute {
                guard case .namespace(let namespace) = lookup(targets[0]) else {
                    throw TemplateError(.runtime, "cannot assign attribute '\(attribute)' on '\(targets[0])', which is not a namespace()")
                }
                namespace.attributes[attribute] = value
                // A namespace may be given itself, or a value holding it: printing it would not end.
                if JinjaValue.namespace(namespace).nests(deeperThan: TemplateLimits.maxValueDepth) {
                    namespace.attributes[attribute] = nil
                    throw TemplateLimits.exceeded(
                        "nests values in namespace attribute '\(attribute)' deeper than the limit of \(TemplateLimits.maxValueDepth) levels")
                }
            } else if targets.count == 1 {
                assign(targets[0], value)
            } else {
                let items = try iterate(value)
                guard items.count == targets.count else {
                    throw TemplateError(.runtime, "cannot unpack \(items.count) values into \(targets.count) names")
                }
                for (target, item) in zip(targets, items) { assign(target, item) }
            }
        case .setBlock(let name, let body):
            let saved = output
            output = ""
            _ = try execute(body)
            let captured = output
            output = saved
            assign(name, .string(captured))
        case .macro(let macro):
            assign(macro.name, .macro(macro))
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        case .filterBlock(let name, let argumentExpressions, let keywordExpressions, let body):
            let saved = output
            output = ""
            _ = try execute(body)
            let captured = output
            output = saved
            let arguments = try argumentExpressions.map { try evaluate($0) }
            var keywords: [(String, JinjaValue)] = []
            for (keyword, expression) in keywordExpressions { keywords.append((keyword, try evaluate(expression))) }
            try emit(try applyFilter(name, .string(captured), arguments, keywords).pythonString())
        case .generation(let body):
            return try execute(body)
        }
        return .normal
    }

    private mutating func executeFor(
        targets: [String], iterable: JinjaExpression, filter: JinjaExpression?, body: [JinjaNode], otherwise: [JinjaNode]
    ) throws -> Flow {
        var items = try iterate(try evaluate(iterable))
        if let filter {
            var kept: [JinjaValue] = []
            for item in items {
                try countIteration()
                scopes.append([:])
                try bind(targets, to: item)
                let keep = try evaluate(filter).isTruthy
                scopes.removeLast()
                if keep { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            return try execute(otherwise)
        }
        for (index, item) in items.enumerated() {
            try countIteration()
            var loop = JinjaObject()
            loop["index0"] = .int(index)
            loop["index"] = .int(index + 1)
            loop["revindex0"] = .int(items.count - 1 - index)
            loop["revindex"] = .int(items.count - index)
            loop["first"] = .bool(index == 0)
            loop["last"] = .bool(index == items.count - 1)
            loop["length"] = .int(items.count)
            loop["depth"] = .int(1)
            loop["depth0"] = .int(0)
            loop["previtem"] = index > 0 ? items[index - 1] : .undefined("loop.previtem")
            loop["nextitem"] = index + 1 < items.count ? items[index + 1] : .undefined("loop.nextitem")
            loop["cycle"] = .function(JinjaFunction(name: "loop.cycle", receiver: .int(index)))
            scopes.append(["loop": .object(loop)])
            defer { scopes.removeLast() }
            try bind(targets, to: item)
            let flow = try execute(body)
            if flow == .breakLoop { break }
        }
        return .normal
    }

    /// Appends rendered text to the output.
    /// - Throws: past ``TemplateLimits/maxStringBytes``.
    private mutating func emit(_ text: String) throws {
        guard output.utf8.count + text.utf8.count <= TemplateLimits.maxStringBytes else {
            throw TemplateLimits.exceeded("renders more than the limit of \(TemplateLimits.maxStringBytes >> 20) MiB of text")
        }
        output += text
    }

    /// Counts one loop iteration. - Throws: past ``TemplateLimits/maxIterations``.
    private mutating func countIteration() throws {
        iterations += 1
        guard iterations <= TemplateLimits.maxIterations else {
            throw TemplateLimits.exceeded("runs more than the limit of \(TemplateLimits.maxIterations) loop iterations")
        }
    }

    private mutating func bind(_ targets: [String], to item: JinjaValue) throws {
        if targets.count == 1 {
            assign(targets[0], item)
            return
        }
        let parts = try iterate(item)
        guard parts.count == targets.count else {
            throw TemplateError(.runtime, "cannot unpack \(parts.count) values into \(targets.count) loop variables")
        }
        for (target, part) in zip(targets, parts) { assign(target, part) }
    }

    /// The items a `for` loop (or unpacking) walks: list items, mapping keys, string characters.
    func iterate(_ value: JinjaValue) throws -> [JinjaValue] {
        switch value {
        case .array(let items): return items
        case .object(let object): return object.keys.map(JinjaValue.string)
        case .string(let string): return string.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        default: throw TemplateError(.runtime, "'\(value.typeName)' object is not iterable")
        }
    }
}
