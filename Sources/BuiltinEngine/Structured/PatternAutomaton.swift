import Foundation

/// A JSON Schema `pattern` compiled to a deterministic automaton over the bytes a generated string may hold.
///
/// Generated strings are restricted to printable ASCII without `"` and `\` (no escapes needed), so the automaton
/// reads bytes 0x20...0x7E; every string it accepts is one the pattern matches, which is all validity needs.
/// States that cannot reach acceptance are removed, so every state it can be in has a way to finish, and
/// ``distance`` gives the fewest bytes to do so (the engine's budget for closing the JSON in time).
///
/// The syntax: literals, `.`, escapes (`\d \w \s \D \W \S` and escaped punctuation, `\n \t`), classes
/// (`[a-z0-9_]`, `[^...]`), groups (`(...)`, `(?:...)`), `|`, quantifiers `* + ? {n} {n,} {n,m}` (a lazy `?` after
/// them changes nothing here), and `^`/`$` at the ends. A pattern without `^` (or `$`) may match anywhere, as
/// JSON Schema says: the automaton then allows any text before (or after) the match.
struct PatternAutomaton: Sendable, Hashable {
    /// `transitions[state * 128 + byte]`: the next state, or -1.
    let transitions: [Int32]
    let accepting: [Bool]
    /// The fewest bytes from each state to an accepting one.
    let distance: [Int32]

    /// Bytes a generated string may hold: printable ASCII but `"` and `\`.
    static let alphabet: [UInt8] = (0x20...0x7E).filter { $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
    /// Repetition bounds above this are refused (the automaton would grow with them).
    static let maxRepeat = 64

    /// - Throws: ``SchemaError`` for syntax it does not know, or a pattern no printable-ASCII string matches.
    init(pattern: String, path: String) throws {
        var parser = RegexParser(scalars: Array(pattern.unicodeScalars), path: path)
        let (node, anchoredStart, anchoredEnd) = try parser.parseTop()
        var nfa = NFA()
        let start = nfa.add()
        let accept = nfa.add()
        var from = start
        if !anchoredStart {
            let loop = nfa.add()
            nfa.epsilon(from, loop)
            for byte in Self.alphabet { nfa.edge(loop, byte, loop) }
            from = loop
        }
        var to = accept
        if !anchoredEnd {
            let loop = nfa.add()
            nfa.epsilon(loop, accept)
            for byte in Self.alphabet { nfa.edge(loop, byte, loop) }
            to = loop
        }
        try nfa.build(node, from: from, to: to)
        (transitions, accepting, distance) = try nfa.determinize(start: start, accept: accept, path: path)
    }

    static let start: Int32 = 0

    func next(_ state: Int32, _ byte: UInt8) -> Int32 {
        byte < 128 ? transitions[Int(state) * 128 + Int(byte)] : -1
    }
}

/// A parsed regular expression.
private indirect enum RegexNode {
    case bytes(Set<UInt8>)
    case sequence([RegexNode])
    case alternation([RegexNode])
    case repeated(RegexNode, min: Int, max: Int?)
}

private struct RegexParser {
    let scalars: [Unicode.Scalar]
    let path: String
    var index = 0

    init(scalars: [Unicode.Scalar], path: String) {
        self.scalars = scalars
        self.path = path
    }

    func error(_ what: String) -> SchemaError {
        SchemaError("pattern \(what) is not supported", path: path)
    }

    mutating func parseTop() throws -> (RegexNode, Bool, Bool) {
        var anchoredStart = false
        if index < scalars.count, scalars[index] == "^" {
            anchoredStart = true
            index += 1
        }
        let node = try parseAlternation(top: true)
        var anchoredEnd = false
        if index < scalars.count, scalars[index] == "$" {
            anchoredEnd = true
            index += 1
        }
        guard index == scalars.count else { throw error("syntax at \"\(String(String.UnicodeScalarView(scalars[index...])))\"") }
        return (node, anchoredStart, anchoredEnd)
    }

    mutating func parseAlternation(top: Bool) throws -> RegexNode {
        var branches = [try parseSequence(top: top)]
        while index < scalars.count, scalars[index] == "|" {
            index += 1
            branches.append(try parseSequence(top: top))
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    mutating func parseSequence(top: Bool) throws -> RegexNode {
        var items: [RegexNode] = []
        while index < scalars.count {
            let c = scalars[index]
            if c == "|" || c == ")" { break }
            if c == "$" && top && index == scalars.count - 1 { break }
            var atom = try parseAtom()
            atom = try parseQuantifier(atom)
            items.append(atom)
        }
        return .sequence(items)
    }

    mutating func parseQuantifier(_ atom: RegexNode) throws -> RegexNode {
        guard index < scalars.count else { return atom }
        var result: RegexNode
        switch scalars[index] {
        case "*":
            result = .repeated(atom, min: 0, max: nil)
            index += 1
        case "+":
            result = .repeated(atom, min: 1, max: nil)
            index += 1
        case "?":
            result = .repeated(atom, min: 0, max: 1)
            index += 1
        case "{":
            guard let close = scalars[index...].firstIndex(of: "}") else { throw error("\"{\" without \"}\"") }
            let inside = String(String.UnicodeScalarView(scalars[(index + 1)..<close]))
            let parts = inside.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard (1...2).contains(parts.count), let low = Int(parts[0]) else { throw error("quantifier {\(inside)}") }
            let high: Int? = parts.count == 1 ? low : (parts[1].isEmpty ? nil : Int(parts[1]))
            if parts.count == 2, !parts[1].isEmpty, high == nil { throw error("quantifier {\(inside)}") }
            guard low <= PatternAutomaton.maxRepeat, (high ?? 0) <= PatternAutomaton.maxRepeat, low <= (high ?? low) else {
                throw error("repetition {\(inside)} (at most \(PatternAutomaton.maxRepeat))")
            }
            result = .repeated(atom, min: low, max: high)
            index = close + 1
        default: return atom
        }
        if index < scalars.count, scalars[index] == "?" { index += 1 }
        return result
    }

    mutating func parseAtom() throws -> RegexNode {
        let c = scalars[index]
        index += 1
        switch c {
        case "(":
            if index + 1 < scalars.count, scalars[index] == "?" {
                guard scalars[index + 1] == ":" else { throw error("group (?\(scalars[index + 1])") }
                index += 2
            }
            let inner = try parseAlternation(top: false)
            guard index < scalars.count, scalars[index] == ")" else { throw error("\"(\" without \")\"") }
            index += 1
            return inner
        case "[": return .bytes(try parseClass())
        case ".": return .bytes(Set(PatternAutomaton.alphabet))
        case "\\": return .bytes(try parseEscape())
        case "^", "$": throw error("anchor \(c) inside the pattern")
        case "*", "+", "?", "{": throw error("quantifier \(c) with nothing to repeat")
        default: return .bytes(Self.literal(c))
        }
    }

    static func literal(_ c: Unicode.Scalar) -> Set<UInt8> {
        c.isASCII ? Set([UInt8(c.value)]).intersection(PatternAutomaton.alphabet) : []
    }

    mutating func parseEscape() throws -> Set<UInt8> {
        guard index < scalars.count else { throw error("ending in \\") }
        let c = scalars[index]
        index += 1
        let all = Set(PatternAutomaton.alphabet)
        let digits = Set((UInt8(ascii: "0")...UInt8(ascii: "9")))
        let word = digits.union(UInt8(ascii: "a")...UInt8(ascii: "z")).union(UInt8(ascii: "A")...UInt8(ascii: "Z")).union([UInt8(ascii: "_")])
        let space: Set<UInt8> = [0x20]
        switch c {
        case "d": return digits
        case "D": return all.subtracting(digits)
        case "w": return word
        case "W": return all.subtracting(word)
        case "s": return space
        case "S": return all.subtracting(space)
        default:
            index -= 1
            return Self.literal(try escapedScalar())
        }
    }

    /// The character an escape such as `\n` or `\.` stands for (after the backslash).
    mutating func escapedScalar() throws -> Unicode.Scalar {
        guard index < scalars.count else { throw error("ending in \\") }
        let c = scalars[index]
        index += 1
        switch c {
        case "n": return "\n"
        case "t": return "\t"
        case "r": return "\r"
        case "f": return "\u{0C}"
        case "v": return "\u{0B}"
        case "0": return "\u{00}"
        default:
            guard c.isASCII, !c.properties.isAlphabetic, !("0"..."9").contains(c) else { throw error("escape \\\(c)") }
            return c
        }
    }

    mutating func parseClass() throws -> Set<UInt8> {
        var negated = false
        if index < scalars.count, scalars[index] == "^" {
            negated = true
            index += 1
        }
        var set = Set<UInt8>()
        var first = true
        while true {
            guard index < scalars.count else { throw error("\"[\" without \"]\"") }
            let c = scalars[index]
            if c == "]" && !first {
                index += 1
                break
            }
            first = false
            index += 1
            var low: Unicode.Scalar = c
            if c == "\\" {
                guard index < scalars.count else { throw error("ending in \\") }
                if "dDwWsS".unicodeScalars.contains(scalars[index]) {
                    set.formUnion(try parseEscape())
                    continue
                }
                low = try escapedScalar()
            }
            if index + 1 < scalars.count, scalars[index] == "-", scalars[index + 1] != "]" {
                var high = scalars[index + 1]
                index += 2
                if high == "\\" { high = try escapedScalar() }
                guard low.value <= high.value else { throw error("class range \(low)-\(high)") }
                for value in low.value...max(low.value, min(high.value, 0x7F)) where value <= 0x7F {
                    set.formUnion(Self.literal(Unicode.Scalar(value)!))
                }
            } else {
                set.formUnion(Self.literal(low))
            }
        }
        return negated ? Set(PatternAutomaton.alphabet).subtracting(set) : set
    }
}

/// A Thompson automaton, then its subset construction.
private struct NFA {
    var edges: [[(UInt8, Int)]] = []
    var epsilons: [[Int]] = []
    /// Refuses automata beyond this size: a pattern that needs more is too big to constrain with.
    static let maxStates = 20_000

    mutating func add() -> Int {
        edges.append([])
        epsilons.append([])
        return edges.count - 1
    }

    mutating func edge(_ from: Int, _ byte: UInt8, _ to: Int) { edges[from].append((byte, to)) }
    mutating func epsilon(_ from: Int, _ to: Int) { epsilons[from].append(to) }

    mutating func build(_ node: RegexNode, from: Int, to: Int) throws {
        guard edges.count < Self.maxStates else { throw SchemaError("pattern is too large to constrain generation with") }
        switch node {
        case .bytes(let set):
            for byte in set { edge(from, byte, to) }
        case .sequence(let items):
            var current = from
            for (position, item) in items.enumerated() {
                let next = position == items.count - 1 ? to : add()
                try build(item, from: current, to: next)
                current = next
            }
            if items.isEmpty { epsilon(from, to) }
        case .alternation(let branches):
            for branch in branches { try build(branch, from: from, to: to) }
        case .repeated(let inner, let low, let high):
            var current = from
            for _ in 0..<low {
                let next = add()
                try build(inner, from: current, to: next)
                current = next
            }
            if let high {
                for _ in low..<high {
                    let next = add()
                    try build(inner, from: current, to: next)
                    epsilon(current, to)
                    current = next
                }
                epsilon(current, to)
            } else {
                let loop = add()
                epsilon(current, loop)
                try build(inner, from: loop, to: loop)
                epsilon(loop, to)
            }
        }
    }

    func closure(_ states: Set<Int>) -> Set<Int> {
        var result = states
        var work = Array(states)
        while let state = work.popLast() {
            for next in epsilons[state] where result.insert(next).inserted { work.append(next) }
        }
        return result
    }

    /// The deterministic automaton (state 0 the start) without states that cannot reach acceptance.
    func determinize(start: Int, accept: Int, path: String) throws -> ([Int32], [Bool], [Int32]) {
        var ids: [Set<Int>: Int] = [:]
        var sets: [Set<Int>] = []
        var table: [[Int]] = []
        func id(_ set: Set<Int>) -> Int {
            if let known = ids[set] { return known }
            ids[set] = sets.count
            sets.append(set)
            return sets.count - 1
        }
        _ = id(closure([start]))
        var position = 0
        while position < sets.count {
            guard sets.count <= Self.maxStates else { throw SchemaError("pattern is too large to constrain generation with", path: path) }
            var row = [Int](repeating: -1, count: 128)
            var targets: [UInt8: Set<Int>] = [:]
            for state in sets[position] {
                for (byte, to) in edges[state] { targets[byte, default: []].insert(to) }
            }
            for (byte, set) in targets { row[Int(byte)] = id(closure(set)) }
            table.append(row)
            position += 1
        }
        let accepting = sets.map { $0.contains(accept) }
        // Distances to acceptance, backwards from the accepting states.
        var distance = [Int32](repeating: -1, count: sets.count)
        var reverse = [[Int]](repeating: [], count: sets.count)
        for (from, row) in table.enumerated() {
            for to in row where to >= 0 { reverse[to].append(from) }
        }
        var queue = accepting.indices.filter { accepting[$0] }
        for state in queue { distance[state] = 0 }
        var head = 0
        while head < queue.count {
            let state = queue[head]
            head += 1
            for from in reverse[state] where distance[from] < 0 {
                distance[from] = distance[state] + 1
                queue.append(from)
            }
        }
        guard distance[0] >= 0 else {
            throw SchemaError("pattern matches no string of printable ASCII characters (the only ones generated for patterns)", path: path)
        }
        var transitions = [Int32](repeating: -1, count: sets.count * 128)
        for (from, row) in table.enumerated() {
            for (byte, to) in row.enumerated() where to >= 0 && distance[to] >= 0 { transitions[from * 128 + byte] = Int32(to) }
        }
        return (transitions, accepting, distance)
    }
}
