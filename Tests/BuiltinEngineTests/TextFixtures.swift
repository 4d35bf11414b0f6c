import Foundation
import ModelText
import Testing

/// The text fixtures written by scripts/make-text-goldens.py, loaded once per process.
enum TextFixtures {
    static let directory: URL = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("text")

    static func url(_ path: String) -> URL { directory.appendingPathComponent(path) }

    static func json<T: Decodable>(_ path: String, as type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: url(path)))
    }

    /// The real vocabularies take a second or two each to parse: share them between tests.
    static let qwen2: Result<Tokenizer, any Error> = Result { try Tokenizer(directory: url("qwen2")) }
    static let llama3: Result<Tokenizer, any Error> = Result { try Tokenizer(directory: url("llama3")) }
    static let small: Result<Tokenizer, any Error> = Result { try Tokenizer(directory: url("small")) }

    static func tokenizer(_ name: String) throws -> Tokenizer {
        switch name {
        case "qwen2": try qwen2.get()
        case "llama3": try llama3.get()
        default: try small.get()
        }
    }

    struct Encodings: Decodable {
        var merges: Int
        var vocab_size: Int
        var ids: [[Int]]
        var decoded_skip_special: [String]
    }

    static let corpus: [String] = (try? json("corpus.json", as: [String].self)) ?? []
    static let encodings: [String: Encodings] = (try? json("encodings.json", as: [String: Encodings].self)) ?? [:]
}
