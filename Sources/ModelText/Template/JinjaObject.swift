/// An insertion-ordered string-keyed mapping.
package struct JinjaObject: Sendable, Equatable {
    package private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    package init() {}

    package init(_ pairs: KeyValuePairs<String, JinjaValue>) {
        for (key, value) in pairs { self[key] = value }
    }

    package init(pairs: [(String, JinjaValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    package var isEmpty: Bool { keys.isEmpty }
    package var count: Int { keys.count }

    package subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    package var pairs: [(key: String, value: JinjaValue)] {
        keys.map { ($0, storage[$0]!) }
    }

    package static func == (lhs: JinjaObject, rhs: JinjaObject) -> Bool {
        // Python dict equality ignores order.
        lhs.count == rhs.count && lhs.keys.allSatisfy { key in rhs[key].map { $0 == lhs[key]! } ?? false }
    }
}
