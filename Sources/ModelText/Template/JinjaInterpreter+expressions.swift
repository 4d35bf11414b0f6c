import Foundation

extension JinjaInterpreter {
    /// Evaluates an expression to a value.
    /// - Throws: ``TemplateError``, also for a string, list or nesting of values past ``TemplateLimits``.
    mutating func evaluate(_ expression: JinjaExpression) throws -> JinjaValue {
        let value = try evaluateUnbounded(expression)
        switch value {
        case .string(let string) where string.utf8.count > TemplateLimits.maxStringBytes:
            throw TemplateLimits.exceeded("makes a string longer than the limit of \(TemplateLimits.maxStringBytes >> 20) MiB")
        case .array(let items) where items.count > TemplateLimits.maxListItems:
            throw TemplateLimits.exceeded("makes a list longer than the limit of \(TemplateLimits.maxListItems) items")
        case .array, .object, .namespace:
            switch expression {
            case .list, .tuple, .dictionary, .call, .filter:
                // A value built here may hold others: `[x]` in a loop would nest without end.
                guard !value.nests(deeperThan: TemplateLimits.maxValueDepth) else {
                    throw TemplateLimits.exceeded("nests lists and dicts deeper than the limit of \(TemplateLimits.maxValueDepth) levels")
                }
            default: break
            }
        default: break
        }
        return value
    }

    private mutating func evaluateUnbounded(_ expression: JinjaExpression) throws -> JinjaValue {
        switch expression {
        case .literal(let value):
            return value
        case .name(let name, _, _):
            return lookup(name)
        case .list(let items):
            return .array(try items.map { try evaluate($0) })
        case .tuple(let items):
            return .array(try items.map { try evaluate($0) })
        case .dictionary(let pairs):
            var object = JinjaObject()
            for (keyExpression, valueExpression) in pairs {
                let key = try evaluate(keyExpression)
                guard case .string(let name) = key else {
                    throw TemplateError(.unsupported, "dictionary keys must be strings, not \(key.typeName)")
                }
                object[name] = try evaluate(valueExpression)
            }
            return .object(object)
        case .attribute(let baseExpression, let name):
            return try attribute(try evaluate(baseExpression), name)
        case .item(let baseExpression, let keyExpression):
            return try subscriptValue(try evaluate(baseExpression), try evaluate(keyExpression))
        case .slice(let baseExpression, let start, let stop, let step):
            let base = try evaluate(baseExpression)
            return try slice(
                base, start: try start.map { try evaluate($0) }, stop: try stop.map { try evaluate($0) }, step: try step.map { try evaluate($0) })
        case .call(let callee, let argumentExpressions, let keywordExpressions, let line, let column):
            let function: JinjaValue
            if case .attribute(let baseExpression, let methodName) = callee {
                // Name the method when a template calls one we do not implement (`'a'.zfill(3)`), rather
                // than failing later on calling an undefined value.
                let base = try evaluate(baseExpression)
                function = try attribute(base, methodName)
                if function.isUndefined, case .string = base {
                    throw TemplateError(.unsupported, "the string method '\(methodName)' is not supported", line: line, column: column)
                }
                if function.isUndefined, case .object = base {
                    throw TemplateError(.unsupported, "the mapping method '\(methodName)' is not supported", line: line, column: column)
                }
            } else {
                function = try evaluate(callee)
            }
            let arguments = try argumentExpressions.map { try evaluate($0) }
            var keywords: [(String, JinjaValue)] = []
            for (name, valueExpression) in keywordExpressions { keywords.append((name, try evaluate(valueExpression))) }
            do {
                return try call(function, arguments, keywords)
            } catch var error as TemplateError where error.line == nil && error.code != .raised {
                error.line = line
                error.column = column
                throw error
            }
        case .filter(let baseExpression, let name, let argumentExpressions, let keywordExpressions, let line, let column):
            let base = try evaluate(baseExpression)
            let arguments = try argumentExpressions.map { try evaluate($0) }
            var keywords: [(String, JinjaValue)] = []
            for (keyword, valueExpression) in keywordExpressions { keywords.append((keyword, try evaluate(valueExpression))) }
            do {
                return try applyFilter(name, base, arguments, keywords)
            } catch var error as TemplateError where error.line == nil {
                error.line = line
                error.column = column
                throw error
            }
        case .test(let baseExpression, let name, let argumentExpressions, let negated, let line, let column):
            let base = try evaluate(baseExpression)
            let arguments = try argumentExpressions.map { try evaluate($0) }
            do {
                let result = try applyTest(name, base, arguments)
                return .bool(negated ? !result : result)
            } catch var error as TemplateError where error.line == nil {
                error.line = line
                error.column = column
                throw error
            }
        case .unary(let op, let operandExpression):
            let operand = try evaluate(operandExpression)
            switch (op, operand) {
            case ("-", .int(let value)):
                guard value != .min else { throw TemplateError(.unsupported, "integer result of unary - exceeds 64 bits") }
                return .int(-value)
            case ("-", .double(let value)): return .double(-value)
            case ("-", .bool(let value)): return .int(value ? -1 : 0)
            case ("+", .int), ("+", .double): return operand
            default: throw TemplateError(.runtime, "bad operand type for unary \(op): '\(operand.typeName)'")
            }
        case .binary(let op, let leftExpression, let rightExpression, let line, let column):
            let left = try evaluate(leftExpression)
            let right = try evaluate(rightExpression)
            do {
                return try binary(op, left, right)
            } catch var error as TemplateError where error.line == nil {
                error.line = line
                error.column = column
                throw error
            }
        case .and(let leftExpression, let rightExpression):
            let left = try evaluate(leftExpression)
            return left.isTruthy ? try evaluate(rightExpression) : left
        case .or(let leftExpression, let rightExpression):
            let left = try evaluate(leftExpression)
            return left.isTruthy ? left : try evaluate(rightExpression)
        case .not(let operand):
            return .bool(!(try evaluate(operand).isTruthy))
        case .conditional(let then, let condition, let otherwise):
            if try evaluate(condition).isTruthy { return try evaluate(then) }
            return try otherwise.map { try evaluate($0) } ?? .undefined("conditional expression")
        }
    }

    // MARK: lookups

    /// `value.name`: dict methods first (Python attribute lookup wins in Jinja), then keys.
    func attribute(_ value: JinjaValue, _ name: String) throws -> JinjaValue {
        switch value {
        case .object(let object):
            if Self.mappingMethods.contains(name) { return .function(JinjaFunction(name: name, receiver: value)) }
            return object[name] ?? .undefined(name)
        case .namespace(let namespace):
            return namespace.attributes[name] ?? .undefined(name)
        case .string:
            if Self.stringMethods.contains(name) { return .function(JinjaFunction(name: name, receiver: value)) }
            return .undefined(name)
        case .undefined(let undefinedName):
            throw TemplateError(.runtime, "'\(undefinedName)' is undefined (reading its attribute '\(name)')")
        default:
            return .undefined(name)
        }
    }

    static let mappingMethods: Set<String> = ["items", "keys", "values", "get"]
    static let stringMethods: Set<String> = [
        "startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip", "upper", "lower", "title",
        "capitalize", "replace", "find", "count", "join", "splitlines", "isdigit", "isalpha", "isspace", "format",
    ]

    /// `value[key]`: Python indexing (negative indices count from the end); missing keys are undefined.
    func subscriptValue(_ value: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch (value, key) {
        case (.array(let items), .int(let index)):
            let resolved = index < 0 ? index + items.count : index
            return items.indices.contains(resolved) ? items[resolved] : .undefined("[\(index)]")
        case (.string(let string), .int(let index)):
            let scalars = Array(string.unicodeScalars)
            let resolved = index < 0 ? index + scalars.count : index
            return scalars.indices.contains(resolved) ? .string(String(scalars[resolved])) : .undefined("[\(index)]")
        case (.object(let object), .string(let name)):
            return object[name] ?? .undefined(name)
        case (.namespace(let namespace), .string(let name)):
            return namespace.attributes[name] ?? .undefined(name)
        case (.undefined(let name), _):
            throw TemplateError(.runtime, "'\(name)' is undefined (indexing it with \(key.pythonRepr()))")
        default:
            return .undefined("[\(key.pythonRepr())]")
        }
    }

    /// Python slicing of lists and strings, including negative steps (`[::-1]`).
    func slice(_ value: JinjaValue, start: JinjaValue?, stop: JinjaValue?, step: JinjaValue?) throws -> JinjaValue {
        func integer(_ bound: JinjaValue?) throws -> Int? {
            switch bound {
            case nil, .none?: return nil
            case .int(let value)?: return value
            case let other?: throw TemplateError(.runtime, "slice indices must be integers or None, not \(other.typeName)")
            }
        }
        let stepValue = try integer(step) ?? 1
        guard stepValue != 0 else { throw TemplateError(.runtime, "slice step cannot be zero") }
        func indices(count: Int) throws -> [Int] {
            func clamp(_ raw: Int?, _ defaultValue: Int) -> Int {
                guard var bound = raw else { return defaultValue }
                if bound < 0 { bound += count }
                return stepValue > 0 ? min(max(bound, 0), count) : min(max(bound, -1), count - 1)
            }
            let from = clamp(try integer(start), stepValue > 0 ? 0 : count - 1)
            let to = clamp(try integer(stop), stepValue > 0 ? count : -1)
            return Array(stride(from: from, to: to, by: stepValue))
        }
        switch value {
        case .array(let items):
            return .array(try indices(count: items.count).map { items[$0] })
        case .string(let string):
            let scalars = Array(string.unicodeScalars)
            var view = String.UnicodeScalarView()
            for index in try indices(count: scalars.count) { view.append(scalars[index]) }
            return .string(String(view))
        case .undefined(let name):
            throw TemplateError(.runtime, "'\(name)' is undefined (slicing it)")
        default:
            throw TemplateError(.runtime, "'\(value.typeName)' object is not subscriptable")
        }
    }

    // MARK: operators

    func binary(_ op: String, _ left: JinjaValue, _ right: JinjaValue) throws -> JinjaValue {
        switch op {
        case "==": return .bool(left == right)
        case "!=": return .bool(left != right)
        case "in": return .bool(try contains(right, left))
        case "~": return .string(left.pythonString() + right.pythonString())
        case "<", ">", "<=", ">=":
            let order = try compare(left, right, op)
            switch op {
            case "<": return .bool(order < 0)
            case ">": return .bool(order > 0)
            case "<=": return .bool(order <= 0)
            default: return .bool(order >= 0)
            }
        default: break
        }
        if case .undefined(let name) = left { throw TemplateError(.runtime, "'\(name)' is undefined (used with '\(op)')") }
        if case .undefined(let name) = right { throw TemplateError(.runtime, "'\(name)' is undefined (used with '\(op)')") }
        switch (op, left, right) {
        case ("+", .string(let a), .string(let b)): return .string(a + b)
        case ("+", .array(let a), .array(let b)): return .array(a + b)
        case ("+", .string, _): throw TemplateError(.runtime, "can only concatenate str (not \"\(right.typeName)\") to str")
        case ("+", .array, _): throw TemplateError(.runtime, "can only concatenate list (not \"\(right.typeName)\") to list")
        case ("*", .string(let a), .int(let n)):
            let (size, overflow) = a.utf8.count.multipliedReportingOverflow(by: max(n, 0))
            guard !overflow, size <= TemplateLimits.maxStringBytes else {
                throw TemplateLimits.exceeded("makes a string longer than the limit of \(TemplateLimits.maxStringBytes >> 20) MiB")
            }
            return .string(String(repeating: a, count: max(n, 0)))
        case ("*", .array(let a), .int(let n)):
            let (count, overflow) = a.count.multipliedReportingOverflow(by: max(n, 0))
            guard !overflow, count <= TemplateLimits.maxListItems else {
                throw TemplateLimits.exceeded("makes a list longer than the limit of \(TemplateLimits.maxListItems) items")
            }
            return .array(Array(repeating: a, count: max(n, 0)).flatMap { $0 })
        default: break
        }
        if case .int(let a) = left.integerValue, case .int(let b) = right.integerValue {
            // Python integers do not overflow; ours report it instead of wrapping.
            func checked(_ result: (partialValue: Int, overflow: Bool)) throws -> JinjaValue {
                guard !result.overflow else { throw TemplateError(.unsupported, "integer result of '\(op)' exceeds 64 bits") }
                return .int(result.partialValue)
            }
            switch op {
            case "+": return try checked(a.addingReportingOverflow(b))
            case "-": return try checked(a.subtractingReportingOverflow(b))
            case "*": return try checked(a.multipliedReportingOverflow(by: b))
            case "/":
                guard b != 0 else { throw TemplateError(.runtime, "division by zero") }
                return .double(Double(a) / Double(b))
            case "//":
                guard b != 0 else { throw TemplateError(.runtime, "integer division or modulo by zero") }
                // Python rounds towards minus infinity; Swift's `/` towards zero.
                let (quotient, overflow) = a.dividedReportingOverflow(by: b)
                guard !overflow else { throw TemplateError(.unsupported, "integer result of '//' exceeds 64 bits") }
                return .int(quotient * b != a && (a < 0) != (b < 0) ? quotient - 1 : quotient)
            case "%":
                guard b != 0 else { throw TemplateError(.runtime, "integer division or modulo by zero") }
                let remainder = a.remainderReportingOverflow(dividingBy: b).partialValue
                return .int(remainder != 0 && (remainder < 0) != (b < 0) ? remainder + b : remainder)
            case "**":
                if b >= 0 {
                    var result = 1
                    for _ in 0..<min(b, 64) { result = try checked(result.multipliedReportingOverflow(by: a)).integerPayload }
                    if b > 64 && a.magnitude > 1 { throw TemplateError(.unsupported, "integer result of '**' exceeds 64 bits") }
                    return .int(b > 64 && a == -1 ? (b % 2 == 0 ? 1 : -1) : result)
                }
                return .double(pow(Double(a), Double(b)))
            default: break
            }
        }
        if let a = left.numericValue, let b = right.numericValue {
            switch op {
            case "+": return .double(a + b)
            case "-": return .double(a - b)
            case "*": return .double(a * b)
            case "/":
                guard b != 0 else { throw TemplateError(.runtime, "float division by zero") }
                return .double(a / b)
            case "//": return .double((a / b).rounded(.down))
            case "%": return .double(a - b * (a / b).rounded(.down))
            case "**": return .double(pow(a, b))
            default: break
            }
        }
        throw TemplateError(.runtime, "unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'")
    }

    /// Python ordering for numbers, strings and lists.
    func compare(_ left: JinjaValue, _ right: JinjaValue, _ op: String) throws -> Int {
        if let a = left.numericValue, let b = right.numericValue { return a < b ? -1 : a > b ? 1 : 0 }
        switch (left, right) {
        case (.string(let a), .string(let b)):
            let x = Array(a.unicodeScalars).map(\.value)
            let y = Array(b.unicodeScalars).map(\.value)
            return x.lexicographicallyPrecedes(y) ? -1 : x == y ? 0 : 1
        case (.array(let a), .array(let b)):
            for (x, y) in zip(a, b) where x != y { return try compare(x, y, op) }
            return a.count < b.count ? -1 : a.count > b.count ? 1 : 0
        default:
            throw TemplateError(.runtime, "'\(op)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'")
        }
    }

    /// Python `needle in container`.
    func contains(_ container: JinjaValue, _ needle: JinjaValue) throws -> Bool {
        switch container {
        case .string(let haystack):
            guard case .string(let part) = needle else {
                throw TemplateError(.runtime, "'in <string>' requires string as left operand, not \(needle.typeName)")
            }
            return part.isEmpty || haystack.utf8.firstRange(of: part.utf8) != nil
        case .array(let items): return items.contains(needle)
        case .object(let object):
            if case .string(let key) = needle { return object[key] != nil }
            return false
        case .namespace(let namespace):
            if case .string(let key) = needle { return namespace.attributes[key] != nil }
            return false
        case .undefined: return false
        default: throw TemplateError(.runtime, "argument of type '\(container.typeName)' is not iterable")
        }
    }
}

extension JinjaValue {
    /// The payload of an `.int` (0 otherwise), for arithmetic helpers.
    var integerPayload: Int {
        if case .int(let value) = self { value } else { 0 }
    }

    /// Ints and bools as `.int` (Python arithmetic treats bools as ints), anything else unchanged.
    var integerValue: JinjaValue {
        switch self {
        case .bool(let value): .int(value ? 1 : 0)
        default: self
        }
    }
}
