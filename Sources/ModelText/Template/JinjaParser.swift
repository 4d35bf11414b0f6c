/// Parses template tokens into statements, following Jinja's grammar and operator precedence:
/// conditional < or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary - < postfix
/// (`.x`, `[i]`, `(...)`) then filters `|f` and tests `is t` — so a filter binds tighter than `+`.
package struct JinjaParser {
    private let tokens: [JinjaToken]
    private var index = 0
    /// Levels of nesting open at the current token (``TemplateLimits/maxNesting``): each recursion of the
    /// parser and each operator, filter or postfix that wraps the expression parsed so far counts one.
    private var nesting = 0

    package init(tokens: [JinjaToken]) {
        self.tokens = tokens
    }

    /// - Throws: ``TemplateError`` with the line and column of the offending token.
    package static func parse(_ source: String) throws -> [JinjaNode] {
        var lexer = JinjaLexer(source)
        var parser = JinjaParser(tokens: try lexer.tokenize())
        let (nodes, end) = try parser.parseBody(until: [])
        if let end { throw parser.error("unexpected '\(end)' with no open block", at: parser.tokens[parser.index - 1]) }
        return nodes
    }

    // MARK: tokens

    private var current: JinjaToken { tokens[index] }

    private func error(_ message: String, at token: JinjaToken) -> TemplateError {
        TemplateError(.syntax, message, line: token.line, column: token.column)
    }

    private func describe(_ token: JinjaToken) -> String {
        switch token.kind {
        case .text: "text"
        case .blockStart: "'{%'"
        case .blockEnd: "'%}'"
        case .variableStart: "'{{'"
        case .variableEnd: "'}}'"
        case .name(let name): "'\(name)'"
        case .string(let value): "string \(value.debugDescription)"
        case .integer(let value): "\(value)"
        case .float(let value): "\(value)"
        case .symbol(let symbol): "'\(symbol)'"
        case .end: "end of template"
        }
    }

    private mutating func advance() -> JinjaToken {
        let token = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return token
    }

    private func isSymbol(_ symbol: String) -> Bool {
        if case .symbol(symbol) = current.kind { true } else { false }
    }

    private func isName(_ name: String) -> Bool {
        if case .name(name) = current.kind { true } else { false }
    }

    private mutating func expectSymbol(_ symbol: String) throws {
        guard isSymbol(symbol) else { throw error("expected '\(symbol)', found \(describe(current))", at: current) }
        index += 1
    }

    private mutating func expectName() throws -> String {
        guard case .name(let name) = current.kind else { throw error("expected a name, found \(describe(current))", at: current) }
        index += 1
        return name
    }

    private mutating func expectKeyword(_ keyword: String) throws {
        guard isName(keyword) else { throw error("expected '\(keyword)', found \(describe(current))", at: current) }
        index += 1
    }

    private mutating func expectBlockEnd() throws {
        guard current.kind == .blockEnd else { throw error("expected '%}', found \(describe(current))", at: current) }
        index += 1
    }

    /// Opens one more level of nesting; the caller closes it (`nesting -= 1`) when done.
    /// - Throws: ``TemplateError`` past ``TemplateLimits/maxNesting``.
    private mutating func nest() throws {
        nesting += 1
        guard nesting <= TemplateLimits.maxNesting else {
            throw error(
                "the template nests deeper than the limit of \(TemplateLimits.maxNesting) levels (brackets, operators, filters and block tags)",
                at: current)
        }
    }

    // MARK: statements

    /// Parses nodes until a block tag whose keyword is in `terminators`; returns that keyword (its
    /// `{% name` consumed, the rest of the tag not) or nil at the end of the template.
    private mutating func parseBody(until terminators: Set<String>) throws -> ([JinjaNode], String?) {
        var nodes: [JinjaNode] = []
        while true {
            let token = current
            switch token.kind {
            case .end:
                if !terminators.isEmpty {
                    throw error("unexpected end of template: expected \(terminators.sorted().map { "'\($0)'" }.joined(separator: " or "))", at: token)
                }
                return (nodes, nil)
            case .text(let text):
                index += 1
                nodes.append(.text(text))
            case .variableStart:
                index += 1
                let expression = try parseExpression()
                guard current.kind == .variableEnd else { throw error("expected '}}', found \(describe(current))", at: current) }
                index += 1
                nodes.append(.output(expression))
            case .blockStart:
                index += 1
                let keywordToken = current
                let keyword = try expectName()
                if terminators.contains(keyword) { return (nodes, keyword) }
                nodes.append(try parseStatement(keyword, at: keywordToken))
            default:
                throw error("unexpected \(describe(token))", at: token)
            }
        }
    }

    private mutating func parseStatement(_ keyword: String, at token: JinjaToken) throws -> JinjaNode {
        try nest()
        defer { nesting -= 1 }
        switch keyword {
        case "if":
            var branches: [(JinjaExpression, [JinjaNode])] = []
            var condition = try parseExpression()
            try expectBlockEnd()
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                switch end {
                case "elif":
                    condition = try parseExpression()
                    try expectBlockEnd()
                case "else":
                    try expectBlockEnd()
                    let (otherwise, _) = try parseBody(until: ["endif"])
                    try expectBlockEnd()
                    return .ifBlock(branches: branches, otherwise: otherwise)
                default:
                    try expectBlockEnd()
                    return .ifBlock(branches: branches, otherwise: [])
                }
            }
        case "for":
            var targets = [try expectName()]
            while isSymbol(",") {
                index += 1
                targets.append(try expectName())
            }
            try expectKeyword("in")
            let iterable = try parseConditionalFree()
            var filter: JinjaExpression?
            if isName("if") {
                index += 1
                filter = try parseExpression()
            }
            if isName("recursive") {
                throw TemplateError(.unsupported, "recursive for loops are not supported", line: current.line, column: current.column)
            }
            try expectBlockEnd()
            let (body, end) = try parseBody(until: ["else", "endfor"])
            var otherwise: [JinjaNode] = []
            try expectBlockEnd()
            if end == "else" {
                (otherwise, _) = try parseBody(until: ["endfor"])
                try expectBlockEnd()
            }
            return .forLoop(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
        case "set":
            let first = try expectName()
            if isSymbol(".") {
                index += 1
                let attribute = try expectName()
                try expectSymbol("=")
                let value = try parseExpression()
                try expectBlockEnd()
                return .set(targets: [first], attribute: attribute, value: value)
            }
            var targets = [first]
            while isSymbol(",") {
                index += 1
                targets.append(try expectName())
            }
            if current.kind == .blockEnd && targets.count == 1 {
                index += 1
                let (body, _) = try parseBody(until: ["endset"])
                try expectBlockEnd()
                return .setBlock(name: first, body: body)
            }
            try expectSymbol("=")
            let value = try parseTupleOrExpression()
            try expectBlockEnd()
            return .set(targets: targets, attribute: nil, value: value)
        case "macro":
            let name = try expectName()
            try expectSymbol("(")
            var parameters: [(String, JinjaExpression?)] = []
            while !isSymbol(")") {
                let parameter = try expectName()
                var defaultValue: JinjaExpression?
                if isSymbol("=") {
                    index += 1
                    defaultValue = try parseExpression()
                }
                parameters.append((parameter, defaultValue))
                if !isSymbol(")") { try expectSymbol(",") }
            }
            index += 1
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endmacro"])
            try expectBlockEnd()
            return .macro(JinjaMacro(name: name, parameters: parameters, body: body))
        case "break":
            try expectBlockEnd()
            return .breakLoop
        case "continue":
            try expectBlockEnd()
            return .continueLoop
        case "filter":
            let name = try parseDottedName()
            var arguments: [JinjaExpression] = []
            var keywords: [(String, JinjaExpression)] = []
            if isSymbol("(") {
                index += 1
                (arguments, keywords) = try parseArguments()
            }
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endfilter"])
            try expectBlockEnd()
            return .filterBlock(name: name, arguments: arguments, keywords: keywords, body: body)
        case "generation":
            try expectBlockEnd()
            let (body, _) = try parseBody(until: ["endgeneration"])
            try expectBlockEnd()
            return .generation(body)
        case "elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration", "endfilter":
            throw error("unexpected '\(keyword)' with no open block", at: token)
        default:
            throw TemplateError(.unsupported, "the '\(keyword)' tag is not supported", line: token.line, column: token.column)
        }
    }

    // MARK: expressions

    /// `a, b` without brackets (right side of `set`) or a single expression.
    private mutating func parseTupleOrExpression() throws -> JinjaExpression {
        let first = try parseExpression()
        guard isSymbol(",") else { return first }
        var items = [first]
        while isSymbol(",") {
            index += 1
            items.append(try parseExpression())
        }
        return .tuple(items)
    }

    package mutating func parseExpression() throws -> JinjaExpression {
        try nest()
        defer { nesting -= 1 }
        let value = try parseOr()
        if isName("if") {
            index += 1
            let condition = try parseOr()
            var otherwise: JinjaExpression?
            if isName("else") {
                index += 1
                otherwise = try parseExpression()
            }
            return .conditional(then: value, condition: condition, otherwise: otherwise)
        }
        return value
    }

    /// The iterable of a `for`: no conditional expression there, because `if` starts the loop filter.
    private mutating func parseConditionalFree() throws -> JinjaExpression {
        try parseOr()
    }

    private mutating func parseOr() throws -> JinjaExpression {
        var wraps = 0
        defer { nesting -= wraps }
        var left = try parseAnd()
        while isName("or") {
            index += 1
            try nest()
            wraps += 1
            left = .or(left, try parseAnd())
        }
        return left
    }

    private mutating func parseAnd() throws -> JinjaExpression {
        var wraps = 0
        defer { nesting -= wraps }
        var left = try parseNot()
        while isName("and") {
            index += 1
            try nest()
            wraps += 1
            left = .and(left, try parseNot())
        }
        return left
    }

    private mutating func parseNot() throws -> JinjaExpression {
        if isName("not") {
            index += 1
            try nest()
            defer { nesting -= 1 }
            return .not(try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws -> JinjaExpression {
        var wraps = 0
        defer { nesting -= wraps }
        var left = try parseAdditive()
        while true {
            let token = current
            if case .symbol(let symbol) = token.kind, ["==", "!=", "<", ">", "<=", ">="].contains(symbol) {
                index += 1
                try nest()
                wraps += 1
                left = .binary(symbol, left, try parseAdditive(), line: token.line, column: token.column)
            } else if isName("in") {
                index += 1
                try nest()
                wraps += 1
                left = .binary("in", left, try parseAdditive(), line: token.line, column: token.column)
            } else if isName("not"), index + 1 < tokens.count, tokens[index + 1].kind == .name("in") {
                index += 2
                try nest()
                wraps += 1
                left = .not(.binary("in", left, try parseAdditive(), line: token.line, column: token.column))
            } else {
                return left
            }
        }
    }

    private mutating func parseAdditive() throws -> JinjaExpression {
        try parseBinaryChain({ $0 == "+" || $0 == "-" }) { try $0.parseConcat() }
    }

    private mutating func parseConcat() throws -> JinjaExpression {
        try parseBinaryChain({ $0 == "~" }) { try $0.parseMultiplicative() }
    }

    private mutating func parseMultiplicative() throws -> JinjaExpression {
        try parseBinaryChain({ ["*", "/", "//", "%"].contains($0) }) { try $0.parsePower() }
    }

    private mutating func parsePower() throws -> JinjaExpression {
        try parseBinaryChain({ $0 == "**" }) { try $0.parseUnary() }
    }

    /// A left-associative chain `operand (operator operand)*` of the symbols `isOperator` accepts; each operator
    /// is one more level of nesting (``nest()``), given back when the chain is parsed.
    private mutating func parseBinaryChain(
        _ isOperator: (String) -> Bool, operand: (inout JinjaParser) throws -> JinjaExpression
    ) throws -> JinjaExpression {
        var wraps = 0
        defer { nesting -= wraps }
        var left = try operand(&self)
        while case .symbol(let symbol) = current.kind, isOperator(symbol) {
            let token = advance()
            try nest()
            wraps += 1
            left = .binary(symbol, left, try operand(&self), line: token.line, column: token.column)
        }
        return left
    }

    /// Jinja applies the filters after a unary minus to the negated value: `-x|abs` is `(-x)|abs`.
    private mutating func parseUnary(withFilters: Bool = true) throws -> JinjaExpression {
        var expression: JinjaExpression
        if case .symbol(let symbol) = current.kind, symbol == "-" || symbol == "+" {
            index += 1
            try nest()
            defer { nesting -= 1 }
            expression = .unary(symbol, try parseUnary(withFilters: false))
        } else {
            expression = try parsePostfix(try parsePrimary())
        }
        return withFilters ? try parseFilters(expression) : expression
    }

    private mutating func parsePrimary() throws -> JinjaExpression {
        let token = advance()
        switch token.kind {
        case .name(let name):
            switch name {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(name, line: token.line, column: token.column)
            }
        case .string(var value):
            // Adjacent string literals concatenate, as in Python.
            while case .string(let next) = current.kind {
                value += next
                index += 1
            }
            return .literal(.string(value))
        case .integer(let value): return .literal(.int(value))
        case .float(let value): return .literal(.double(value))
        case .symbol("("):
            if isSymbol(")") {
                index += 1
                return .tuple([])
            }
            let first = try parseExpression()
            if isSymbol(")") {
                index += 1
                return first
            }
            var items = [first]
            while isSymbol(",") {
                index += 1
                if isSymbol(")") { break }
                items.append(try parseExpression())
            }
            try expectSymbol(")")
            return .tuple(items)
        case .symbol("["):
            var items: [JinjaExpression] = []
            while !isSymbol("]") {
                items.append(try parseExpression())
                if !isSymbol("]") { try expectSymbol(",") }
            }
            index += 1
            return .list(items)
        case .symbol("{"):
            var pairs: [(JinjaExpression, JinjaExpression)] = []
            while !isSymbol("}") {
                let key = try parseExpression()
                try expectSymbol(":")
                pairs.append((key, try parseExpression()))
                if !isSymbol("}") { try expectSymbol(",") }
            }
            index += 1
            return .dictionary(pairs)
        default:
            throw error("unexpected \(describe(token)) in an expression", at: token)
        }
    }

    private mutating func parsePostfix(_ base: JinjaExpression) throws -> JinjaExpression {
        var expression = base
        var wraps = 0
        defer { nesting -= wraps }
        while true {
            let token = current
            if isSymbol(".") || isSymbol("[") || isSymbol("(") {
                try nest()
                wraps += 1
            }
            if isSymbol(".") {
                index += 1
                if case .integer(let number) = current.kind {
                    index += 1
                    expression = .item(expression, .literal(.int(number)))
                } else {
                    expression = .attribute(expression, try expectName())
                }
            } else if isSymbol("[") {
                index += 1
                expression = try parseSubscript(expression)
            } else if isSymbol("(") {
                index += 1
                let (arguments, keywords) = try parseArguments()
                expression = .call(expression, arguments: arguments, keywords: keywords, line: token.line, column: token.column)
            } else {
                return expression
            }
        }
    }

    private mutating func parseSubscript(_ base: JinjaExpression) throws -> JinjaExpression {
        var parts: [JinjaExpression?] = [nil]
        var sawColon = false
        while !isSymbol("]") {
            if isSymbol(":") {
                index += 1
                sawColon = true
                parts.append(nil)
                guard parts.count <= 3 else { throw error("too many ':' in a slice", at: current) }
            } else {
                guard parts[parts.count - 1] == nil else { throw error("expected ']' or ':', found \(describe(current))", at: current) }
                parts[parts.count - 1] = try parseExpression()
            }
        }
        index += 1
        if !sawColon {
            guard let key = parts[0] else { throw error("empty subscript", at: current) }
            return .item(base, key)
        }
        while parts.count < 3 { parts.append(nil) }
        return .slice(base, start: parts[0], stop: parts[1], step: parts[2])
    }

    /// Arguments after `(` up to and including `)`.
    private mutating func parseArguments() throws -> ([JinjaExpression], [(String, JinjaExpression)]) {
        var arguments: [JinjaExpression] = []
        var keywords: [(String, JinjaExpression)] = []
        while !isSymbol(")") {
            if case .name(let name) = current.kind, index + 1 < tokens.count, tokens[index + 1].kind == .symbol("=") {
                index += 2
                keywords.append((name, try parseExpression()))
            } else {
                guard keywords.isEmpty else { throw error("positional argument after keyword argument", at: current) }
                arguments.append(try parseExpression())
            }
            if !isSymbol(")") { try expectSymbol(",") }
        }
        index += 1
        return (arguments, keywords)
    }

    private mutating func parseFilters(_ base: JinjaExpression) throws -> JinjaExpression {
        var expression = base
        var wraps = 0
        defer { nesting -= wraps }
        while true {
            let token = current
            if isSymbol("|") || isName("is") {
                try nest()
                wraps += 1
            }
            if isSymbol("|") {
                index += 1
                let name = try parseDottedName()
                var arguments: [JinjaExpression] = []
                var keywords: [(String, JinjaExpression)] = []
                if isSymbol("(") {
                    index += 1
                    (arguments, keywords) = try parseArguments()
                }
                expression = .filter(expression, name: name, arguments: arguments, keywords: keywords, line: token.line, column: token.column)
            } else if isName("is") {
                index += 1
                var negated = false
                if isName("not") {
                    index += 1
                    negated = true
                }
                let nameToken = current
                let name: String
                switch nameToken.kind {
                case .name(let value): name = value
                case .symbol(let symbol) where ["==", "!=", "<", ">", "<=", ">="].contains(symbol): name = symbol
                default: throw error("expected a test name after 'is', found \(describe(nameToken))", at: nameToken)
                }
                index += 1
                var arguments: [JinjaExpression] = []
                if isSymbol("(") {
                    index += 1
                    arguments = try parseArguments().0
                } else if startsPrimary() {
                    // Jinja allows one bare argument: `x is divisibleby 3`, `x is sameas none`.
                    arguments = [try parsePostfix(try parsePrimary())]
                }
                expression = .test(expression, name: name, arguments: arguments, negated: negated, line: token.line, column: token.column)
            } else {
                return expression
            }
        }
    }

    private func startsPrimary() -> Bool {
        switch current.kind {
        case .string, .integer, .float: return true
        case .name(let name): return !["and", "or", "not", "in", "is", "if", "else"].contains(name)
        case .symbol(let symbol): return symbol == "[" || symbol == "{"
        default: return false
        }
    }

    private mutating func parseDottedName() throws -> String {
        var name = try expectName()
        while isSymbol("."), index + 1 < tokens.count, case .name(let part) = tokens[index + 1].kind {
            index += 2
            name += "." + part
        }
        return name
    }
}
