import Foundation
import Testing

@testable import Catalog

@Suite("Catalog")
struct CatalogTests {
    /// A valid catalog as untyped JSON, so each test can break one field.
    static func validJSON() -> [String: Any] {
        let size: [String: Any] = [
            "size": "0.5b", "hf_repo": "Qwen/Qwen2.5-0.5B-Instruct", "modelscope_id": "Qwen/Qwen2.5-0.5B-Instruct",
            "ollama_name": "qwen2.5:0.5b",
        ]
        let model: [String: Any] = [
            "id": "qwen2.5", "name": "Qwen2.5", "description": "d", "official_url": "https://qwenlm.github.io/",
            "sizes": [size], "quantizations": ["bf16"], "engines": ["builtin", "vllm"], "formats": ["safetensors"],
            "default_engine": "builtin",
        ]
        var second = model
        second["id"] = "qwen3"
        var third = model
        third["id"] = "llama3.2"
        return ["models": [model, second, third]]
    }

    static func parse(_ object: [String: Any]) throws -> ModelCatalog {
        try ModelCatalog.parse(try JSONSerialization.data(withJSONObject: object))
    }

    /// Applies `edit` to models[2] and returns the resulting validation error text.
    static func errorAfterEditingThirdModel(_ edit: (inout [String: Any]) -> Void) throws -> String {
        var root = validJSON()
        var models = root["models"] as! [[String: Any]]
        edit(&models[2])
        root["models"] = models
        let error = try #require(throws: CatalogError.self) { try parse(root) }
        return error.description
    }

    @Test("the example catalog is valid, covers the required families, and equals the built-in one")
    func exampleCatalog() throws {
        let url = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../../models.example.json").standardized
        let example = try ModelCatalog.load(contentsOf: url)
        let builtIn = try ModelCatalog.builtIn()
        #expect(example.entries == builtIn.entries, "run scripts/sync-catalog.sh after editing models.example.json")
        let refs = Set(example.entries.flatMap { entry in entry.sizes.map { "\(entry.id):\($0.size)" } })
        for ref in [
            "qwen2.5:0.5b", "qwen2.5:1.5b", "qwen2.5:3b", "qwen2.5:7b", "qwen3:0.6b", "qwen3:1.7b", "qwen3:4b", "qwen3:8b",
            "llama3.2:1b", "llama3.2:3b",
        ] {
            #expect(refs.contains(ref), "catalog lacks \(ref)")
        }
        for entry in example.entries {
            for size in entry.sizes {
                #expect(size.modelscopeID != nil, "\(entry.id):\(size.size) has no ModelScope id")
            }
        }
    }

    @Test("a missing field is reported at its exact location")
    func missingField() throws {
        let message = try Self.errorAfterEditingThirdModel { model in
            var sizes = model["sizes"] as! [[String: Any]]
            sizes[0].removeValue(forKey: "hf_repo")
            model["sizes"] = sizes
        }
        #expect(message == "models[2].sizes[0].hf_repo: missing")
    }

    @Test(
        "wrong types, bad values and duplicates name their location",
        arguments: [
            ("name", "42", "models[2].name: must be a string"),
            ("engines", #"["builtin", "tgi"]"#, "models[2].engines[1]: unknown engine \"tgi\" (known: builtin, llamacpp, ollama, sglang, vllm)"),
            ("default_engine", #""ollama""#, "models[2].default_engine: \"ollama\" is not one of this model's engines (builtin, vllm)"),
            ("official_url", #""not a url""#, "models[2].official_url: \"not a url\" is not an http(s) URL"),
            ("sizes", "[]", "models[2].sizes: must be a non-empty array"),
            ("id", #""qwen2.5""#, "models[2].id: duplicate id \"qwen2.5\""),
            (
                "id", #""Bad Id""#,
                "models[2].id: \"Bad Id\" must be lower-case letters, digits, '.', '_' or '-' (it is used in refs like Bad Id:SIZE)"
            ),
            ("quantizations", "null", "models[2].quantizations: missing"),
        ])
    func badField(key: String, valueJSON: String, expected: String) throws {
        let value = try JSONSerialization.jsonObject(with: Data(valueJSON.utf8), options: .fragmentsAllowed)
        let message = try Self.errorAfterEditingThirdModel { model in model[key] = value }
        #expect(message == expected)
    }

    @Test("the earlier format: sizes in any case, no default_engine (the first engine), formats kept")
    func earlierFormat() throws {
        var root = Self.validJSON()
        var models = root["models"] as! [[String: Any]]
        models[0].removeValue(forKey: "default_engine")
        models[0]["engines"] = ["vllm", "builtin"]
        models[0]["formats"] = ["safetensors", "gguf"]
        var sizes = models[0]["sizes"] as! [[String: Any]]
        sizes[0]["size"] = "0.5B"
        sizes.append(["size": "1.5B", "hf_repo": "Qwen/Qwen2.5-1.5B-Instruct"])
        models[0]["sizes"] = sizes
        root["models"] = models
        let entry = try #require(try Self.parse(root).entry(id: "qwen2.5"))
        #expect(entry.defaultEngine == "vllm")
        #expect(entry.sizes.map(\.size) == ["0.5b", "1.5b"])
        #expect(entry.formats == ["safetensors", "gguf"])
        // Sizes that differ only in case are one size.
        sizes.append(["size": "1.5b", "hf_repo": "Qwen/Qwen2.5-1.5B-Instruct"])
        models[0]["sizes"] = sizes
        root["models"] = models
        #expect(throws: CatalogError(location: "models[0].sizes[2].size", problem: "duplicate size \"1.5b\"")) { try Self.parse(root) }
        // No engines and no default: still an error at default_engine.
        models[0]["engines"] = [String]()
        root["models"] = models
        #expect(throws: CatalogError(location: "models[0].default_engine", problem: "missing")) { try Self.parse(root) }
    }

    @Test("a malformed repository id in a size is refused")
    func badRepo() throws {
        let message = try Self.errorAfterEditingThirdModel { model in
            var sizes = model["sizes"] as! [[String: Any]]
            sizes[0]["modelscope_id"] = "no-slash"
            model["sizes"] = sizes
        }
        #expect(message == "models[2].sizes[0].modelscope_id: \"no-slash\" is not a repository id of the form owner/name")
    }

    @Test("gguf_repo: optional, a repository id, and a GGUF repository resolves to its catalog size")
    func ggufRepo() throws {
        let message = try Self.errorAfterEditingThirdModel { model in
            var sizes = model["sizes"] as! [[String: Any]]
            sizes[0]["gguf_repo"] = "Qwen2.5-GGUF"
            model["sizes"] = sizes
        }
        #expect(message == "models[2].sizes[0].gguf_repo: \"Qwen2.5-GGUF\" is not a repository id of the form owner/name")
        #expect(try Self.parse(Self.validJSON()).entries[0].sizes[0].ggufRepo == nil)

        let catalog = try ModelCatalog.builtIn()
        let size = try #require(catalog.entry(id: "qwen2.5")?.sizes.first { $0.size == "0.5b" })
        #expect(size.ggufRepo == "Qwen/Qwen2.5-0.5B-Instruct-GGUF")
        let byGGUF = try catalog.resolve(ModelRef(parsing: "Qwen/Qwen2.5-0.5B-Instruct-GGUF"))
        #expect(byGGUF.entry?.id == "qwen2.5" && byGGUF.size?.size == "0.5b" && byGGUF.repo == "Qwen/Qwen2.5-0.5B-Instruct-GGUF")
    }

    @Test("invalid JSON and a wrong root are reported")
    func invalidJSON() throws {
        let error = try #require(throws: CatalogError.self) { try ModelCatalog.parse(Data("{\"models\": [".utf8), source: "c.json") }
        #expect(error.location == "c.json")
        #expect(error.problem.hasPrefix("is not valid JSON"))
        let rootError = try #require(throws: CatalogError.self) { try ModelCatalog.parse(Data("[]".utf8)) }
        #expect(rootError.description == "(root): must be an object with a \"models\" array")
        let missing = try #require(throws: CatalogError.self) { try ModelCatalog.parse(Data("{}".utf8)) }
        #expect(missing.description == "models: missing")
    }

    @Test("refs: catalog refs and repo ids resolve to hub repositories")
    func refs() throws {
        let catalog = try ModelCatalog.builtIn()
        #expect(try ModelRef(parsing: "qwen2.5:0.5b") == .catalog(id: "qwen2.5", size: "0.5b"))
        #expect(try ModelRef(parsing: "Qwen/Qwen2.5-0.5B-Instruct") == .repo("Qwen/Qwen2.5-0.5B-Instruct"))

        let hf = try catalog.resolve(ModelRef(parsing: "qwen2.5:0.5b"))
        #expect(hf.repo == "Qwen/Qwen2.5-0.5B-Instruct")
        #expect(hf.source == .huggingface)
        let ms = try catalog.resolve(ModelRef(parsing: "llama3.2:1b"), source: .modelscope)
        #expect(ms.repo == "LLM-Research/Llama-3.2-1B-Instruct")
        let byRepo = try catalog.resolve(ModelRef(parsing: "qwen/qwen3-0.6b"))
        #expect(byRepo.entry?.id == "qwen3")
        let unknownRepo = try catalog.resolve(ModelRef(parsing: "acme/tiny"))
        #expect(unknownRepo.entry == nil && unknownRepo.repo == "acme/tiny")

        let noSize = try #require(throws: ModelRefError.self) { try catalog.resolve(ModelRef(parsing: "qwen2.5:70b")) }
        #expect(noSize.description == "model \"qwen2.5:70b\" has no size \"70b\" (sizes: 0.5b, 1.5b, 3b, 7b)")
        let unknown = try #require(throws: ModelRefError.self) { try catalog.resolve(ModelRef(parsing: "gpt5:1b")) }
        #expect(unknown.description.hasPrefix("model \"gpt5:1b\" is not in the catalog"))
        let ambiguous = try #require(throws: ModelRefError.self) { try catalog.resolve(ModelRef(parsing: "qwen3")) }
        #expect(ambiguous.description.contains("needs a size"))
        for bad in ["", "a/b/c", "../etc", "a:b:c", "owner/", "/name"] {
            #expect(throws: ModelRefError.self, "\"\(bad)\" should not parse") { try ModelRef(parsing: bad) }
        }
    }
}
