/// Where a ``JSONGrammar`` is after some bytes of output: a set of stacks (one per way the bytes so far can be
/// read; `anyOf` can leave several), each a stack of frames, the innermost value on top.
///
/// ``advance(_:)`` reads one byte; an empty state means the bytes cannot be continued into a valid output. The
/// states are small values, hashable, so that the masks of states met again are looked up, not recomputed.
package struct JSONMatcher: Hashable, Sendable {
    /// One level of nesting: a value not started yet, or a started object, array, string, number or literal.
    struct Frame: Hashable, Sendable {
        enum Kind: UInt8 { case value, object, map, array, string, number, literal, sequence }
        var kind: Kind
        var node: Int32
        /// value: 1 when a leading space is allowed; object/map/array/number: the phase; string: characters
        /// written (capped); literal: the trie node; sequence: the part that comes next.
        var a: Int32 = 0
        /// object: the property; array: the item count; string: the pattern state; number: digits in the part.
        var b: Int32 = 0
        /// object: the offset in the key; string: the escape or UTF-8 state.
        var c: Int32 = 0
    }

    var stacks: [[Frame]]

    /// Before the first byte: the root value.
    package init(grammar: JSONGrammar) {
        stacks = [[Frame(kind: .value, node: Int32(grammar.root))]]
    }

    private init(stacks: [[Frame]]) {
        self.stacks = stacks
    }

    /// No continuation is possible from here (the bytes were not a valid prefix).
    package var isDead: Bool { stacks.isEmpty }
    /// A whole value has been read and nothing may follow.
    package var isComplete: Bool { !stacks.isEmpty && stacks.allSatisfy(\.isEmpty) }

    /// The state after `byte`, dead when `byte` cannot come next.
    package func advance(_ byte: UInt8, _ grammar: JSONGrammar) -> JSONMatcher {
        var out: [[Frame]] = []
        for stack in stacks { Self.step(stack, byte, grammar, &out) }
        if out.count > 1 {
            var seen = Set<[Frame]>()
            out = out.filter { seen.insert($0).inserted }
        }
        return JSONMatcher(stacks: out)
    }

    /// The state after `bytes`.
    package func advance(_ bytes: some Sequence<UInt8>, _ grammar: JSONGrammar) -> JSONMatcher {
        var state = self
        for byte in bytes {
            state = state.advance(byte, grammar)
            if state.isDead { break }
        }
        return state
    }

    /// Whether the output may end here: a whole value was read (a number or literal may also go on).
    package func canEnd(_ grammar: JSONGrammar) -> Bool {
        stacks.contains { stack in
            guard let top = stack.first else { return true }
            guard stack.count == 1 else { return false }
            switch top.kind {
            case .number: return Self.numberAccepts(top.a)
            case .literal:
                guard case .literal(let trie) = grammar.nodes[Int(top.node)] else { return false }
                return trie.terminal[Int(top.a)]
            default: return false
            }
        }
    }

    /// When the only reading is between two characters of a string without a pattern (the common case, where most
    /// tokens are allowed): its characters so far (capped), its bounds, and the fewest bytes that close the frames
    /// below it. ``JSONConstraint`` then tests tokens by their precomputed ``StringContent``, not by walking them.
    func freeString(_ grammar: JSONGrammar) -> (count: Int, min: Int, max: Int, below: Int)? {
        guard stacks.count == 1, let top = stacks[0].last, top.kind == .string, top.c == 0,
            case .string(let min, let max, nil) = grammar.nodes[Int(top.node)]
        else { return nil }
        let below = stacks[0].dropLast().reduce(0) { Swift.min(JSONGrammar.unreachable, $0 + Self.remaining($1, grammar)) }
        return (Int(top.a), min, max, below)
    }

    /// What a token does inside a string without a pattern, from between two characters.
    enum StringContent: Equatable {
        /// It stays inside: `characters` begun, ending in escape or UTF-8 state `end` (0 between characters).
        case inside(characters: Int, end: Int32)
        /// It holds the closing quote: what follows belongs to the frames below.
        case leaves
        /// It cannot be in a string (a control character, a bad escape, ill-formed UTF-8).
        case invalid
    }

    static func stringContent(_ bytes: [UInt8]) -> StringContent {
        var state: Int32 = 0
        var characters = 0
        for byte in bytes {
            if state == 1 {
                guard "\"\\/bfnrt".utf8.contains(byte) else { return .invalid }
                state = 0
            } else if state >= 2 {
                guard let next = utf8Continue(state, byte) else { return .invalid }
                state = next
            } else if byte == quote {
                return .leaves
            } else {
                if byte == backslash {
                    state = 1
                } else if byte >= 0x80 {
                    guard let next = utf8Start(byte) else { return .invalid }
                    state = next
                } else if byte < 0x20 {
                    return .invalid
                }
                characters += 1
            }
        }
        return bytes.isEmpty ? .invalid : .inside(characters: characters, end: state)
    }

    /// The fewest bytes that complete the output from here.
    package func bytesToClose(_ grammar: JSONGrammar) -> Int {
        stacks.map { stack in stack.reduce(0) { min(JSONGrammar.unreachable, $0 + Self.remaining($1, grammar)) } }.min() ?? JSONGrammar.unreachable
    }

    // MARK: One byte

    private static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\"), space = UInt8(ascii: " ")
    private static let comma = UInt8(ascii: ","), colon = UInt8(ascii: ":")

    private static func step(_ stack: [Frame], _ byte: UInt8, _ grammar: JSONGrammar, _ out: inout [[Frame]]) {
        guard var top = stack.last else { return }
        var rest = stack
        rest.removeLast()
        switch top.kind {
        case .value:
            if byte == space && top.a == 1 {
                top.a = 0
                out.append(rest + [top])
                return
            }
            start(Int(top.node), byte, rest, grammar, &out)

        case .object:
            guard case .object(let properties) = grammar.nodes[Int(top.node)], let costs = grammar.objectCosts[Int(top.node)] else { return }
            switch top.a {
            case 0, 4, 5:
                let from = top.a == 0 ? 0 : Int(top.b)
                if top.a == 0 && byte == UInt8(ascii: "}") && costs.requiredCount[0] == 0 {
                    out.append(rest)
                } else if top.a == 4 && byte == space {
                    top.a = 5
                    out.append(rest + [top])
                } else if byte == quote {
                    for k in grammar.keyChoices(properties, costs: costs, from: from) {
                        out.append(rest + [Frame(kind: .object, node: top.node, a: 1, b: Int32(k), c: 1)])
                    }
                }
            case 1:
                let key = properties[Int(top.b)].key
                guard key[Int(top.c)] == byte else { return }
                top.c += 1
                if Int(top.c) == key.count { top.a = 2 }
                out.append(rest + [top])
            case 2:
                guard byte == colon else { return }
                top.a = 3
                out.append(rest + [top, Frame(kind: .value, node: Int32(properties[Int(top.b)].value), a: 1)])
            default:
                let next = Int(top.b) + 1
                if byte == comma && costs.fromKey[next] < JSONGrammar.unreachable {
                    top.a = 4
                    top.b = Int32(next)
                    out.append(rest + [top])
                } else if byte == UInt8(ascii: "}") && costs.requiredCount[next] == 0 {
                    out.append(rest)
                }
            }

        case .map:
            guard case .map(let value) = grammar.nodes[Int(top.node)] else { return }
            let key = Frame(kind: .string, node: Int32(grammar.keyString))
            switch top.a {
            case 0, 3:
                if byte == UInt8(ascii: "}") {
                    out.append(rest)
                } else if top.a == 0 && byte == quote {
                    top.a = 2
                    out.append(rest + [top, key])
                } else if top.a == 3 && byte == comma {
                    top.a = 4
                    out.append(rest + [top])
                }
            case 2:
                guard byte == colon else { return }
                top.a = 3
                out.append(rest + [top, Frame(kind: .value, node: Int32(value), a: 1)])
            default:
                if top.a == 4 && byte == space {
                    top.a = 5
                    out.append(rest + [top])
                } else if byte == quote {
                    top.a = 2
                    out.append(rest + [top, key])
                }
            }

        case .array:
            guard case .array(let item, let min, let max) = grammar.nodes[Int(top.node)] else { return }
            if byte == UInt8(ascii: "]") && Int(top.b) >= min {
                out.append(rest)
            } else if top.a == 0 && max > 0 {
                top.a = 3
                top.b = 1
                step(rest + [top, Frame(kind: .value, node: Int32(item))], byte, grammar, &out)
            } else if top.a == 3 && byte == comma && Int(top.b) < max {
                top.b += 1
                out.append(rest + [top, Frame(kind: .value, node: Int32(item), a: 1)])
            }

        case .string:
            guard case .string(let min, let max, let pattern) = grammar.nodes[Int(top.node)] else { return }
            if top.c == 1 {
                // After a backslash: the escapes that need nothing more.
                guard "\"\\/bfnrt".utf8.contains(byte) else { return }
                top.c = 0
            } else if top.c >= 2 {
                guard let next = utf8Continue(top.c, byte) else { return }
                top.c = next
            } else if byte == quote {
                let done = pattern.map { $0.accepting[Int(top.b)] } ?? (Int(top.a) >= min)
                if done { out.append(rest) }
                return
            } else if let pattern {
                let next = pattern.next(top.b, byte)
                guard next >= 0 else { return }
                top.b = next
            } else {
                guard Int(top.a) < max else { return }
                if byte == backslash {
                    top.c = 1
                } else if byte >= 0x80 {
                    guard let state = utf8Start(byte) else { return }
                    top.c = state
                } else if byte < 0x20 {
                    return
                }
                // Characters beyond both bounds need not be told apart: the count stops there.
                let cap = max == .max ? min : max
                top.a = Int32(Swift.min(Int(top.a) + 1, cap))
            }
            out.append(rest + [top])

        case .number:
            guard case .number(let integer) = grammar.nodes[Int(top.node)] else { return }
            if let next = numberStep(top, byte, integer: integer) {
                out.append(rest + [next])
            } else if numberAccepts(top.a) {
                step(rest, byte, grammar, &out)
            }

        case .literal:
            guard case .literal(let trie) = grammar.nodes[Int(top.node)] else { return }
            if let child = trie.child(top.a, byte) {
                if trie.terminal[Int(child)] && trie.children[Int(child)].isEmpty {
                    out.append(rest)
                } else {
                    top.a = child
                    out.append(rest + [top])
                }
            } else if trie.terminal[Int(top.a)] {
                step(rest, byte, grammar, &out)
            }

        case .sequence:
            // The parts before `a` are done; the frame is left out while the last part is written.
            guard case .sequence(let parts) = grammar.nodes[Int(top.node)] else { return }
            let part = parts[Int(top.a)]
            top.a += 1
            start(part, byte, Int(top.a) < parts.count ? rest + [top] : rest, grammar, &out)
        }
    }

    /// The first byte of a value of `node`.
    private static func start(_ node: Int, _ byte: UInt8, _ rest: [Frame], _ grammar: JSONGrammar, _ out: inout [[Frame]]) {
        let index = Int32(node)
        switch grammar.nodes[node] {
        case .object:
            if byte == UInt8(ascii: "{") && rest.count < JSONGrammar.maxDepth { out.append(rest + [Frame(kind: .object, node: index)]) }
        case .map:
            if byte == UInt8(ascii: "{") && rest.count < JSONGrammar.maxDepth { out.append(rest + [Frame(kind: .map, node: index)]) }
        case .array:
            if byte == UInt8(ascii: "[") && rest.count < JSONGrammar.maxDepth { out.append(rest + [Frame(kind: .array, node: index)]) }
        case .string:
            if byte == quote { out.append(rest + [Frame(kind: .string, node: index)]) }
        case .number(let integer):
            if let next = numberStep(Frame(kind: .number, node: index), byte, integer: integer) { out.append(rest + [next]) }
        case .literal:
            step(rest + [Frame(kind: .literal, node: index)], byte, grammar, &out)
        case .anyOf(let alternatives):
            for alternative in alternatives { start(alternative, byte, rest, grammar, &out) }
        case .sequence(let parts):
            let frame = Frame(kind: .sequence, node: index, a: 1)
            start(parts[0], byte, parts.count > 1 ? rest + [frame] : rest, grammar, &out)
        }
    }

    // MARK: Numbers

    /// Digits allowed in the integer and fraction parts, and in the exponent: every number the mask allows is a
    /// finite double (at most 15 digits times 10^±99), so the output parses wherever JSON parses to doubles; three
    /// exponent digits let a sampled `1e999` through, which parsers reject or read as infinity.
    private static let maxDigits: Int32 = 15, maxExponentDigits: Int32 = 2

    /// Number phases: 0 start, 1 after `-`, 2 a leading zero, 3 integer digits, 4 after `.`, 5 fraction digits,
    /// 6 after `e`, 7 after the exponent's sign, 8 exponent digits.
    private static func numberAccepts(_ phase: Int32) -> Bool {
        phase == 2 || phase == 3 || phase == 5 || phase == 8
    }

    private static func numberStep(_ frame: Frame, _ byte: UInt8, integer: Bool) -> Frame? {
        var frame = frame
        let digit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
        func to(_ phase: Int32, digits: Int32 = 0) -> Frame {
            frame.a = phase
            frame.b = digits
            return frame
        }
        switch frame.a {
        case 0 where byte == UInt8(ascii: "-"): return to(1)
        case 0, 1:
            guard digit else { return nil }
            return byte == UInt8(ascii: "0") ? to(2) : to(3, digits: 1)
        case 2, 3, 5:
            if digit && frame.a != 2 && frame.b < maxDigits { return to(frame.a, digits: frame.b + 1) }
            if integer { return nil }
            if byte == UInt8(ascii: ".") && frame.a != 5 { return to(4) }
            if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") { return to(6) }
            return nil
        case 4: return digit ? to(5, digits: 1) : nil
        case 6 where byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-"): return to(7)
        case 6, 7: return digit ? to(8, digits: 1) : nil
        case 8: return digit && frame.b < maxExponentDigits ? to(8, digits: frame.b + 1) : nil
        default: return nil
        }
    }

    // MARK: UTF-8 inside strings

    /// UTF-8 states after a lead byte (Unicode's table of well-formed sequences): 2 one continuation byte left,
    /// 3 two, 4 three, 5 after E0 (A0–BF next), 6 after ED (80–9F next), 7 after F0 (90–BF next), 8 after F4 (80–8F).
    private static func utf8Start(_ byte: UInt8) -> Int32? {
        switch byte {
        case 0xC2...0xDF: 2
        case 0xE0: 5
        case 0xE1...0xEC, 0xEE...0xEF: 3
        case 0xED: 6
        case 0xF0: 7
        case 0xF1...0xF3: 4
        case 0xF4: 8
        default: nil
        }
    }

    private static func utf8Continue(_ state: Int32, _ byte: UInt8) -> Int32? {
        let (low, high, next): (UInt8, UInt8, Int32) =
            switch state {
            case 2: (0x80, 0xBF, 0)
            case 3: (0x80, 0xBF, 2)
            case 4: (0x80, 0xBF, 3)
            case 5: (0xA0, 0xBF, 2)
            case 6: (0x80, 0x9F, 2)
            case 7: (0x90, 0xBF, 3)
            default: (0x80, 0x8F, 3)
            }
        return byte >= low && byte <= high ? next : nil
    }

    /// Bytes still needed to finish an escape or a UTF-8 sequence in string state `state`.
    static func utf8Pending(_ state: Int32) -> Int {
        switch state {
        case 1, 2: 1
        case 3, 5, 6: 2
        case 4, 7, 8: 3
        default: 0
        }
    }

    // MARK: Bytes to close

    /// The fewest bytes to finish `frame` once the frames above it are finished.
    private static func remaining(_ frame: Frame, _ grammar: JSONGrammar) -> Int {
        let node = Int(frame.node)
        switch frame.kind {
        case .value:
            return grammar.shortest[node]
        case .object:
            guard case .object(let properties) = grammar.nodes[node], let costs = grammar.objectCosts[node] else { return JSONGrammar.unreachable }
            let k = Int(frame.b)
            func after(_ k: Int) -> Int { costs.requiredCost[k + 1] + costs.requiredCount[k + 1] + 1 }
            switch frame.a {
            case 0: return costs.fromKeyOrClose(0)
            case 1: return properties[k].key.count - Int(frame.c) + 1 + grammar.shortest[properties[k].value] + after(k)
            case 2: return 1 + grammar.shortest[properties[k].value] + after(k)
            case 3: return after(k)
            default: return costs.fromKey[k]
            }
        case .map:
            guard case .map(let value) = grammar.nodes[node] else { return JSONGrammar.unreachable }
            switch frame.a {
            case 0, 3: return 1
            case 2: return 2 + grammar.shortest[value]
            default: return 4 + grammar.shortest[value]
            }
        case .array:
            guard case .array(let item, let min, _) = grammar.nodes[node] else { return JSONGrammar.unreachable }
            let missing = max(0, min - Int(frame.b))
            return missing == 0 ? 1 : missing * (grammar.shortest[item] + 1) + (frame.a == 0 ? 0 : 1)
        case .string:
            guard case .string(let min, _, let pattern) = grammar.nodes[node] else { return JSONGrammar.unreachable }
            let content = pattern.map { Int($0.distance[Int(frame.b)]) } ?? max(0, min - Int(frame.a))
            return utf8Pending(frame.c) + content + 1
        case .number:
            return numberAccepts(frame.a) ? 0 : 1
        case .literal:
            guard case .literal(let trie) = grammar.nodes[node] else { return JSONGrammar.unreachable }
            return trie.toEnd[Int(frame.a)]
        case .sequence:
            guard case .sequence(let parts) = grammar.nodes[node] else { return JSONGrammar.unreachable }
            return parts[Int(frame.a)...].reduce(0) { min(JSONGrammar.unreachable, $0 + grammar.shortest[$1]) }
        }
    }
}
