import Foundation

extension JinjaInterpreter {
    // MARK: filters

    /// Applies `value | name(arguments)`.
    mutating func applyFilter(_ name: String, _ value: JinjaValue, _ arguments: [JinjaValue], _ keywords: [(String, JinjaValue)]) throws -> JinjaValue
    {
        func argument(_ position: Int, _ keyword: String) -> JinjaValue? {
            keywords.first { $0.0 == keyword }?.1 ?? (position < arguments.count ? arguments[position] : nil)
        }
        // Jinja's select/reject/map start with `if value:`, so none and undefined give nothing.
        if ["reject", "select", "rejectattr", "selectattr", "map"].contains(name) && !value.isTruthy {
            return .array([])
        }
        switch name {
        case "length", "count":
            switch value {
            case .string(let string): return .int(string.unicodeScalars.count)
            case .array(let items): return .int(items.count)
            case .object(let object): return .int(object.count)
            case .undefined: return .int(0)
            default: throw TemplateError(.runtime, "object of type '\(value.typeName)' has no len()")
            }
        case "trim":
            let characters = argument(0, "chars")
            return .string(try Self.strip(value.pythonString(), characters, leading: true, trailing: true))
        case "tojson":
            // transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
            var options = JinjaValue.JSONOptions()
            for (index, parameter) in ["ensure_ascii", "indent", "separators", "sort_keys"].enumerated() {
                guard let option = argument(index, parameter) else { continue }
                switch (parameter, option) {
                case ("ensure_ascii", _): options.ensureASCII = option.isTruthy
                case ("indent", .int(let width)): options.indent = width
                case ("indent", .none): options.indent = nil
                case ("sort_keys", _): options.sortKeys = option.isTruthy
                case ("separators", .array(let pair)) where pair.count == 2:
                    guard case .string(let item) = pair[0], case .string(let key) = pair[1] else {
                        throw TemplateError(.runtime, "tojson separators must be two strings")
                    }
                    options.separators = (item, key)
                case ("separators", .none): break
                default: throw TemplateError(.unsupported, "tojson(\(parameter)=\(option.pythonRepr())) is not supported")
                }
            }
            return .string(try value.pythonJSON(options))
        case "dictsort":
            guard case .object(let object) = value else { throw TemplateError(.runtime, "dictsort needs a mapping, not \(value.typeName)") }
            let caseSensitive = argument(0, "case_sensitive")?.isTruthy ?? false
            let byValue = argument(1, "by") == .string("value")
            let reverse = argument(2, "reverse")?.isTruthy ?? false
            func key(_ pair: (key: String, value: JinjaValue)) -> JinjaValue {
                let field = byValue ? pair.value : .string(pair.key)
                if !caseSensitive, case .string(let text) = field { return .string(text.lowercased()) }
                return field
            }
            var failure: (any Error)?
            let sorted = object.pairs.sorted { left, right in
                do { return try compare(key(left), key(right), "<") < 0 } catch {
                    failure = error
                    return false
                }
            }
            if let failure { throw failure }
            let pairs = sorted.map { JinjaValue.array([.string($0.key), $0.value]) }
            return .array(reverse ? pairs.reversed() : pairs)
        case "items":
            switch value {
            case .object(let object): return .array(object.pairs.map { .array([.string($0.key), $0.value]) })
            case .undefined: return .array([])
            default: throw TemplateError(.runtime, "items filter needs a mapping, not \(value.typeName)")
            }
        case "reject", "select":
            guard case .string(let test)? = arguments.first else {
                // Without a test, select/reject by truthiness.
                return .array(try iterate(value).filter { $0.isTruthy == (name == "select") })
            }
            let testArguments = Array(arguments.dropFirst())
            return .array(try iterate(value).filter { try applyTest(test, $0, testArguments) == (name == "select") })
        case "rejectattr", "selectattr":
            guard case .string(let attributeName)? = arguments.first else {
                throw TemplateError(.runtime, "\(name) needs an attribute name")
            }
            let testName: String? = if case .string(let test)? = arguments.dropFirst().first { test } else { nil }
            let testArguments = Array(arguments.dropFirst(2))
            return .array(
                try iterate(value).filter { item in
                    let field = try attribute(item, attributeName)
                    let passed = try testName.map { try applyTest($0, field, testArguments) } ?? field.isTruthy
                    return passed == (name == "selectattr")
                })
        case "map":
            if case .string(let attributeName)? = keywords.first(where: { $0.0 == "attribute" })?.1 {
                let fallback = keywords.first { $0.0 == "default" }?.1
                return .array(
                    try iterate(value).map { item in
                        let field = try attribute(item, attributeName)
                        return field.isUndefined ? (fallback ?? field) : field
                    })
            }
            guard case .string(let filterName)? = arguments.first else { throw TemplateError(.runtime, "map needs a filter name or attribute=") }
            let rest = Array(arguments.dropFirst())
            var mapped: [JinjaValue] = []
            for item in try iterate(value) { mapped.append(try applyFilter(filterName, item, rest, [])) }
            return .array(mapped)
        case "join":
            let separator = argument(0, "d")?.pythonString() ?? ""
            var items = try iterate(value)
            if case .string(let attributeName)? = argument(1, "attribute") {
                items = try items.map { try attribute($0, attributeName) }
            }
            return .string(items.map { $0.pythonString() }.joined(separator: separator))
        case "first":
            return try iterate(value).first ?? .undefined("first")
        case "last":
            return try iterate(value).last ?? .undefined("last")
        case "upper":
            return .string(value.pythonString().uppercased())
        case "lower":
            return .string(value.pythonString().lowercased())
        case "capitalize":
            let text = value.pythonString()
            return .string(text.prefix(1).uppercased() + text.dropFirst().lowercased())
        case "title":
            return .string(value.pythonString().capitalized)
        case "default", "d":
            let fallback = argument(0, "default_value") ?? .string("")
            let boolean = argument(1, "boolean")?.isTruthy ?? false
            if value.isUndefined || (boolean && !value.isTruthy) { return fallback }
            return value
        case "list":
            return .array(try iterate(value))
        case "string":
            return .string(value.pythonString())
        case "int":
            switch value {
            case .int: return value
            case .bool(let flag): return .int(flag ? 1 : 0)
            case .double(let number): return .int(try Self.integer(number))
            case .string(let text): return .int(try Int(text.trimmingCharacters(in: .whitespaces)) ?? Self.integer(Double(text) ?? 0))
            default: return argument(0, "default") ?? .int(0)
            }
        case "float":
            switch value {
            case .int(let number): return .double(Double(number))
            case .double: return value
            case .string(let text): return .double(Double(text.trimmingCharacters(in: .whitespaces)) ?? 0)
            default: return .double(0)
            }
        case "abs":
            switch value {
            case .int(let number):
                guard number != .min else { throw TemplateError(.unsupported, "integer result of abs() exceeds 64 bits") }
                return .int(abs(number))
            case .double(let number): return .double(abs(number))
            default: throw TemplateError(.runtime, "bad operand type for abs(): '\(value.typeName)'")
            }
        case "replace":
            guard arguments.count >= 2 else { throw TemplateError(.runtime, "replace needs old and new strings") }
            return .string(value.pythonString().replacingOccurrences(of: arguments[0].pythonString(), with: arguments[1].pythonString()))
        case "reverse":
            if case .string(let text) = value { return .string(String(String.UnicodeScalarView(text.unicodeScalars.reversed()))) }
            return .array(try iterate(value).reversed())
        case "unique":
            var seen: [JinjaValue] = []
            for item in try iterate(value) where !seen.contains(item) { seen.append(item) }
            return .array(seen)
        case "sum":
            return try iterate(value).reduce(JinjaValue.int(0)) { try binary("+", $0, $1) }
        case "min", "max":
            let items = try iterate(value)
            guard var best = items.first else { return .undefined(name) }
            for item in items.dropFirst() {
                let order = try compare(item, best, name == "min" ? "<" : ">")
                if name == "min" ? order < 0 : order > 0 { best = item }
            }
            return best
        case "safe":
            return value
        case "escape", "e":
            var escaped = ""
            for character in value.pythonString().unicodeScalars {
                switch character {
                case "&": escaped += "&amp;"
                case "<": escaped += "&lt;"
                case ">": escaped += "&gt;"
                case "\"": escaped += "&#34;"
                case "'": escaped += "&#39;"
                default: escaped.unicodeScalars.append(character)
                }
            }
            return .string(escaped)
        case "indent":
            let width = argument(0, "width").flatMap { if case .int(let number) = $0 { number } else { nil } } ?? 4
            let indentFirst = argument(1, "first")?.isTruthy ?? false
            let blank = argument(2, "blank")?.isTruthy ?? false
            let lines = value.pythonString().split(separator: "\n", omittingEmptySubsequences: false)
            let (padded, overflow) = max(width, 0).multipliedReportingOverflow(by: lines.count)
            guard !overflow, padded <= TemplateLimits.maxStringBytes else {
                throw TemplateLimits.exceeded("indents past the limit of \(TemplateLimits.maxStringBytes >> 20) MiB of text")
            }
            let padding = String(repeating: " ", count: max(width, 0))
            let indented = lines.enumerated().map { index, line in
                (index == 0 && !indentFirst) || (!blank && line.isEmpty) ? String(line) : padding + line
            }
            return .string(indented.joined(separator: "\n"))
        default:
            throw TemplateError(.unsupported, "the '\(name)' filter is not supported")
        }
    }

    // MARK: tests

    /// Evaluates `value is name(arguments)`.
    func applyTest(_ name: String, _ value: JinjaValue, _ arguments: [JinjaValue]) throws -> Bool {
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": if case .none = value { return true } else { return false }
        case "string": if case .string = value { return true } else { return false }
        case "mapping":
            switch value {
            case .object, .namespace: return true
            default: return false
            }
        case "iterable":
            switch value {
            case .string, .array, .object, .undefined: return true
            default: return false
            }
        case "sequence":
            switch value {
            case .string, .array, .object: return true
            default: return false
            }
        case "number":
            switch value {
            case .int, .double, .bool: return true
            default: return false
            }
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "callable":
            switch value {
            case .function, .macro: return true
            default: return false
            }
        case "equalto", "eq", "==", "sameas":
            guard let other = arguments.first else { throw TemplateError(.runtime, "the '\(name)' test needs a value") }
            return value == other
        case "ne", "!=":
            guard let other = arguments.first else { throw TemplateError(.runtime, "the '\(name)' test needs a value") }
            return value != other
        case "lt", "<", "gt", ">", "le", "<=", "ge", ">=":
            guard let other = arguments.first else { throw TemplateError(.runtime, "the '\(name)' test needs a value") }
            let order = try compare(value, other, name)
            switch name {
            case "lt", "<": return order < 0
            case "gt", ">": return order > 0
            case "le", "<=": return order <= 0
            default: return order >= 0
            }
        case "in":
            guard let container = arguments.first else { throw TemplateError(.runtime, "the 'in' test needs a container") }
            return try contains(container, value)
        case "odd", "even", "divisibleby":
            guard case .int(let number) = value.integerValue else { throw TemplateError(.runtime, "the '\(name)' test needs an integer") }
            if name == "odd" { return number % 2 != 0 }
            if name == "even" { return number % 2 == 0 }
            guard case .int(let divisor)? = arguments.first, divisor != 0 else {
                throw TemplateError(.runtime, "divisibleby needs a non-zero integer")
            }
            return number % divisor == 0
        case "lower": return value.pythonString() == value.pythonString().lowercased()
        case "upper": return value.pythonString() == value.pythonString().uppercased()
        default:
            throw TemplateError(.unsupported, "the '\(name)' test is not supported")
        }
    }

    // MARK: calls

    mutating func call(_ function: JinjaValue, _ arguments: [JinjaValue], _ keywords: [(String, JinjaValue)]) throws -> JinjaValue {
        switch function {
        case .function(let function):
            if let receiver = function.receiver {
                return try callMethod(function.name, on: receiver, arguments)
            }
            return try callGlobal(function.name, arguments, keywords)
        case .macro(let macro):
            // A runaway recursive macro must fail the render, not overflow the stack.
            guard scopes.count < TemplateLimits.maxCallDepth else {
                throw TemplateLimits.exceeded(
                    "calls macro '\(macro.name)' nested past the limit of \(TemplateLimits.maxCallDepth) macro calls and loops")
            }
            var scope: [String: JinjaValue] = [:]
            for (index, parameter) in macro.parameters.enumerated() {
                if let value = keywords.first(where: { $0.0 == parameter.name })?.1 {
                    scope[parameter.name] = value
                } else if index < arguments.count {
                    scope[parameter.name] = arguments[index]
                } else if let defaultValue = parameter.defaultValue {
                    scope[parameter.name] = try evaluate(defaultValue)
                } else {
                    scope[parameter.name] = .undefined(parameter.name)
                }
            }
            let saved = output
            output = ""
            scopes.append(scope)
            defer { scopes.removeLast() }
            _ = try execute(macro.body)
            let result = output
            output = saved
            return .string(result)
        case .undefined(let name):
            throw TemplateError(.runtime, "'\(name)' is undefined and cannot be called")
        default:
            throw TemplateError(.runtime, "'\(function.typeName)' object is not callable")
        }
    }

    private func callGlobal(_ name: String, _ arguments: [JinjaValue], _ keywords: [(String, JinjaValue)]) throws -> JinjaValue {
        switch name {
        case "raise_exception":
            throw TemplateError(.raised, arguments.first?.pythonString() ?? "raise_exception called")
        case "strftime_now":
            guard case .string(let format)? = arguments.first else { throw TemplateError(.runtime, "strftime_now needs a format string") }
            return .string(Self.formatDate(format, now, timeZone))
        case "namespace", "dict":
            var object = JinjaObject()
            if case .object(let initial)? = arguments.first {
                for (key, value) in initial.pairs { object[key] = value }
            }
            for (key, value) in keywords { object[key] = value }
            return name == "namespace" ? .namespace(JinjaNamespace(object)) : .object(object)
        case "range":
            let bounds = try arguments.map { value -> Int in
                guard case .int(let number) = value.integerValue else { throw TemplateError(.runtime, "range needs integers") }
                return number
            }
            let (start, stop, step) =
                switch bounds.count {
                case 1: (0, bounds[0], 1)
                case 2: (bounds[0], bounds[1], 1)
                case 3: (bounds[0], bounds[1], bounds[2])
                default: (0, 0, 1)
                }
            guard step != 0 else { throw TemplateError(.runtime, "range() arg 3 must not be zero") }
            // Jinja's sandbox refuses ranges over 100000 items (MAX_RANGE); so do we.
            guard (Double(stop) - Double(start)) / Double(step) <= 100_000 else {
                throw TemplateError(.runtime, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")
            }
            return .array(stride(from: start, to: stop, by: step).map(JinjaValue.int))
        default:
            throw TemplateError(.unsupported, "the global function '\(name)' is not supported")
        }
    }

    private func callMethod(_ name: String, on receiver: JinjaValue, _ arguments: [JinjaValue]) throws -> JinjaValue {
        if name == "loop.cycle", case .int(let index) = receiver {
            guard !arguments.isEmpty else { throw TemplateError(.runtime, "no items for cycling given") }
            return arguments[index % arguments.count]
        }
        if case .object(let object) = receiver {
            switch name {
            case "items": return .array(object.pairs.map { .array([.string($0.key), $0.value]) })
            case "keys": return .array(object.keys.map(JinjaValue.string))
            case "values": return .array(object.pairs.map(\.value))
            default:  // get
                guard case .string(let key)? = arguments.first else { return arguments.count > 1 ? arguments[1] : .none }
                return object[key] ?? (arguments.count > 1 ? arguments[1] : .none)
            }
        }
        guard case .string(let string) = receiver else { throw TemplateError(.unsupported, "method '\(name)' is not supported here") }
        func stringArgument(_ index: Int) throws -> String? {
            guard index < arguments.count else { return nil }
            switch arguments[index] {
            case .none: return nil
            case .string(let value): return value
            case let other: throw TemplateError(.runtime, "\(name)() argument must be str, not \(other.typeName)")
            }
        }
        switch name {
        case "startswith", "endswith":
            let candidates: [JinjaValue] = if case .array(let items)? = arguments.first { items } else { Array(arguments.prefix(1)) }
            guard !candidates.isEmpty else { throw TemplateError(.runtime, "\(name)() takes at least 1 argument") }
            for candidate in candidates {
                guard case .string(let affix) = candidate else {
                    throw TemplateError(.runtime, "\(name) first arg must be str or a tuple of str, not \(candidate.typeName)")
                }
                let matches = name == "startswith" ? string.utf8.starts(with: affix.utf8) : string.utf8.reversed().starts(with: affix.utf8.reversed())
                if matches { return .bool(true) }
            }
            return .bool(false)
        case "split", "rsplit":
            let maxSplit: Int = if arguments.count > 1, case .int(let limit) = arguments[1] { limit } else { -1 }
            return .array(
                try Self.split(string, separator: try stringArgument(0), maxSplit: maxSplit, fromRight: name == "rsplit").map(JinjaValue.string))
        case "strip": return .string(try Self.strip(string, arguments.first, leading: true, trailing: true))
        case "lstrip": return .string(try Self.strip(string, arguments.first, leading: true, trailing: false))
        case "rstrip": return .string(try Self.strip(string, arguments.first, leading: false, trailing: true))
        case "upper": return .string(string.uppercased())
        case "lower": return .string(string.lowercased())
        case "title": return .string(string.capitalized)
        case "capitalize": return .string(string.prefix(1).uppercased() + string.dropFirst().lowercased())
        case "replace":
            guard let old = try stringArgument(0), let new = try stringArgument(1) else {
                throw TemplateError(.runtime, "replace() needs two strings")
            }
            return .string(string.replacingOccurrences(of: old, with: new))
        case "find":
            guard let needle = try stringArgument(0) else { throw TemplateError(.runtime, "find() needs a string") }
            guard let range = string.utf8.firstRange(of: needle.utf8) else { return .int(-1) }
            return .int(string.unicodeScalars[..<range.lowerBound].count)
        case "count":
            guard let needle = try stringArgument(0), !needle.isEmpty else { return .int(string.unicodeScalars.count + 1) }
            return .int(string.components(separatedBy: needle).count - 1)
        case "format":
            return .string(try Self.format(string, arguments))
        case "join":
            guard case .array(let items)? = arguments.first else { throw TemplateError(.runtime, "join() needs a list") }
            return .string(items.map { $0.pythonString() }.joined(separator: string))
        case "splitlines":
            return .array(
                string.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }).map {
                    .string(String($0))
                }.dropLast(string.hasSuffix("\n") ? 1 : 0))
        case "isdigit":
            return .bool(
                !string.isEmpty && string.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal || $0.properties.numericType == .digit })
        case "isalpha": return .bool(!string.isEmpty && string.unicodeScalars.allSatisfy { $0.properties.isAlphabetic })
        case "isspace": return .bool(!string.isEmpty && string.unicodeScalars.allSatisfy(Self.isPythonSpace))
        default:
            throw TemplateError(.unsupported, "the string method '\(name)' is not supported")
        }
    }

    // MARK: Python string helpers

    /// Python's `str.format` with positional fields only (`{}`, `{0}`) and `{{`/`}}` escapes.
    static func format(_ template: String, _ arguments: [JinjaValue]) throws -> String {
        var out = ""
        var automatic = 0
        var scalars = template.unicodeScalars[...]
        while let scalar = scalars.popFirst() {
            if scalar == "{" && scalars.first == "{" || scalar == "}" && scalars.first == "}" {
                scalars.removeFirst()
                out.unicodeScalars.append(scalar)
            } else if scalar == "{" {
                var field = ""
                while let next = scalars.popFirst(), next != "}" { field.unicodeScalars.append(next) }
                let index: Int
                if field.isEmpty {
                    index = automatic
                    automatic += 1
                } else if let explicit = Int(field) {
                    index = explicit
                } else {
                    throw TemplateError(.unsupported, "str.format field {\(field)} is not supported (only positional fields)")
                }
                guard arguments.indices.contains(index) else {
                    throw TemplateError(.runtime, "Replacement index \(index) out of range for positional args tuple")
                }
                out += arguments[index].pythonString()
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Python's `str.isspace` for one character.
    static func isPythonSpace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace || (0x1C...0x1F).contains(scalar.value)
    }

    /// Python's `strip`/`lstrip`/`rstrip`: whitespace by default, otherwise any of `characters`.
    static func strip(_ string: String, _ characters: JinjaValue?, leading: Bool, trailing: Bool) throws -> String {
        let shouldStrip: (Unicode.Scalar) -> Bool
        switch characters {
        case nil, .none?: shouldStrip = isPythonSpace
        case .string(let set)?:
            let members = Set(set.unicodeScalars)
            shouldStrip = { members.contains($0) }
        case let other?: throw TemplateError(.runtime, "strip arg must be None or str, not \(other.typeName)")
        }
        var scalars = Substring(string).unicodeScalars[...]
        if leading { while let first = scalars.first, shouldStrip(first) { scalars.removeFirst() } }
        if trailing { while let last = scalars.last, shouldStrip(last) { scalars.removeLast() } }
        return String(String.UnicodeScalarView(scalars))
    }

    /// Python's `str.split(sep, maxsplit)` and `rsplit`.
    static func split(_ string: String, separator: String?, maxSplit: Int, fromRight: Bool) throws -> [String] {
        let scalars = Array(string.unicodeScalars)
        func text(_ range: Range<Int>) -> String { String(String.UnicodeScalarView(scalars[range])) }
        guard let separator else {
            // Runs of whitespace separate; leading/trailing whitespace yields no empty strings.
            var parts: [String] = []
            var index = 0
            var splits = 0
            while index < scalars.count {
                while index < scalars.count && isPythonSpace(scalars[index]) { index += 1 }
                guard index < scalars.count else { break }
                if maxSplit >= 0 && splits >= maxSplit && !fromRight {
                    var end = scalars.count
                    while end > index && isPythonSpace(scalars[end - 1]) { end -= 1 }
                    parts.append(text(index..<end))
                    break
                }
                let start = index
                while index < scalars.count && !isPythonSpace(scalars[index]) { index += 1 }
                parts.append(text(start..<index))
                splits += 1
            }
            return parts
        }
        let needle = Array(separator.unicodeScalars)
        guard !needle.isEmpty else { throw TemplateError(.runtime, "empty separator") }
        var cuts: [Range<Int>] = []
        if fromRight {
            var index = scalars.count - needle.count
            while index >= 0 && (maxSplit < 0 || cuts.count < maxSplit) {
                if Array(scalars[index..<index + needle.count]) == needle {
                    cuts.insert(index..<index + needle.count, at: 0)
                    index -= needle.count
                } else {
                    index -= 1
                }
            }
        } else {
            var index = 0
            while index + needle.count <= scalars.count && (maxSplit < 0 || cuts.count < maxSplit) {
                if Array(scalars[index..<index + needle.count]) == needle {
                    cuts.append(index..<index + needle.count)
                    index += needle.count
                } else {
                    index += 1
                }
            }
        }
        var parts: [String] = []
        var start = 0
        for cut in cuts {
            parts.append(text(start..<cut.lowerBound))
            start = cut.upperBound
        }
        parts.append(text(start..<scalars.count))
        return parts
    }

    /// C `strftime` on the wall-clock time of `date` in `timeZone` (Python formats `datetime.now()` so).
    /// A float as Python's `int()` truncates it. - Throws: for NaN, infinities and values past 64 bits.
    static func integer(_ number: Double) throws -> Int {
        guard let value = Int(exactly: number.rounded(.towardZero)) else {
            throw TemplateError(.unsupported, "cannot convert float \(JinjaValue.pythonFloat(number)) to a 64-bit integer")
        }
        return value
    }

    static func formatDate(_ format: String, _ date: Date, _ timeZone: TimeZone) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        var time = tm()
        time.tm_year = Int32(parts.year! - 1900)
        time.tm_mon = Int32(parts.month! - 1)
        time.tm_mday = Int32(parts.day!)
        time.tm_hour = Int32(parts.hour!)
        time.tm_min = Int32(parts.minute!)
        time.tm_sec = Int32(parts.second!)
        time.tm_wday = Int32(parts.weekday! - 1)
        time.tm_yday = Int32(calendar.ordinality(of: .day, in: .year, for: date)! - 1)
        var buffer = [CChar](repeating: 0, count: 256)
        let count = strftime(&buffer, buffer.count, format, &time)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
