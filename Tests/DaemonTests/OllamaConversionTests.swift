import Foundation
import HTTPTypes
import ModelStore
import ModeldAPI
import NIOCore
import Testing

@testable import Catalog
@testable import Daemon

@Suite("Ollama API: names, options, keep-alive, stream and pull conversions")
struct OllamaConversionTests {
    let catalog = ModelCatalog(entries: [
        CatalogEntry(
            id: "qwen2.5", name: "Qwen2.5", description: "", officialURL: "https://example.com",
            sizes: [CatalogSize(size: "0.5b", hfRepo: "Qwen/Qwen2.5-0.5B-Instruct", modelscopeID: "qwen/Qwen2.5-0.5B-Instruct", ollamaName: nil)],
            quantizations: [], engines: ["builtin"], formats: ["safetensors"], defaultEngine: "builtin")
    ])

    @Test("a name without a tag means :latest; catalog refs keep their size, repositories and runs drop the tag to route")
    func names() throws {
        let repo = try OllamaName(parsing: "acme/tiny")
        #expect(repo.description == "acme/tiny:latest" && repo.routeModel == "acme/tiny" && repo.isRepository)
        let revision = try OllamaName(parsing: "acme/tiny:v2")
        #expect(revision.tag == "v2" && revision.routeModel == "acme/tiny")
        let ref = try OllamaName(parsing: "qwen2.5:0.5b")
        #expect(ref.routeModel == "qwen2.5:0.5b" && !ref.isRepository)
        let run = try OllamaName(parsing: "tiny:latest")
        #expect(run.routeModel == "tiny")
        let hub = try OllamaName(parsing: "hf.co/Acme/Tiny:Q4_K_M")
        #expect(hub.source == .huggingface && hub.model == "Acme/Tiny" && hub.tag == "Q4_K_M")
        #expect(try OllamaName(parsing: "modelscope.cn/qwen/x").source == .modelscope)
        #expect(try OllamaName(parsing: "Acme/Tiny:LATEST").key == "acme/tiny:latest")
        #expect(try OllamaName(parsing: " nope ").given == " nope ")
        #expect(throws: OllamaError.self) { try OllamaName(parsing: "") }
        #expect(throws: OllamaError.self) { try OllamaName(parsing: "acme/tiny:") }
    }

    @Test("a repository the catalog has is named by its catalog ref, any other as owner/name:latest")
    func display() {
        #expect(OllamaNames.display(repo: "qwen/qwen2.5-0.5b-instruct", catalog: catalog).description == "qwen2.5:0.5b")
        #expect(OllamaNames.display(repo: "acme/tiny", catalog: catalog).description == "acme/tiny:latest")
        #expect(OllamaNames.display(runModel: "qwen2.5:0.5b", catalog: catalog).description == "qwen2.5:0.5b")
        #expect(OllamaNames.display(runModel: "acme/tiny", catalog: catalog).description == "acme/tiny:latest")
    }

    @Test("the newest ready version is :latest (or its catalog ref), older ones their revision; aliases follow their target")
    func library() throws {
        func version(_ repo: String, _ revision: String, _ commit: String, _ state: VersionState = .ready) -> LocalVersion {
            LocalVersion(
                model: ModelRecord(id: 1, source: "huggingface", repo: repo),
                version: VersionRecord(modelID: 1, requestedRevision: revision, commit: commit, state: state, path: "/m/\(commit)"))
        }
        let versions = [
            version("acme/tiny", "main", "b" * 40), version("acme/tiny", "v1", "a" * 40), version("acme/tiny", "main", "c" * 40, .failed),
            version("Qwen/Qwen2.5-0.5B-Instruct", "main", "d" * 40),
        ]
        let library = OllamaLibrary(versions: versions, catalog: catalog, aliases: ["mine:latest": "acme/tiny:latest", "gone:latest": "none:latest"])
        #expect(library.models.map(\.name.description) == ["acme/tiny:latest", "acme/tiny:v1", "qwen2.5:0.5b", "mine:latest"])
        #expect(library.find(try OllamaName(parsing: "acme/tiny"))?.version.version.commit == "b" * 40)
        #expect(library.find(try OllamaName(parsing: "acme/tiny:v1"))?.version.version.commit == "a" * 40)
        #expect(library.find(try OllamaName(parsing: "acme/tiny:\(String("b" * 12))"))?.version.version.commit == "b" * 40)
        #expect(library.find(try OllamaName(parsing: "Qwen/Qwen2.5-0.5B-Instruct"))?.name.description == "qwen2.5:0.5b")
        #expect(library.find(try OllamaName(parsing: "mine"))?.routeModel == "acme/tiny")
        #expect(library.find(try OllamaName(parsing: "acme/other")) == nil)
    }

    @Test("options map to OpenAI's fields; num_ctx and other runner options are left out; bad types are a 400")
    func options() throws {
        let fields = try OllamaConversion.samplingFields(
            [
                "temperature": 0.2, "top_p": 0.9, "top_k": 40, "num_predict": 64, "stop": ["\n"], "seed": 7, "repeat_penalty": 1.1,
                "num_ctx": 4096, "num_gpu": 1, "min_p": 0.05,
            ] as [String: Any])
        #expect(Set(fields.keys) == ["temperature", "top_p", "top_k", "max_tokens", "stop", "seed", "repetition_penalty", "min_p"])
        #expect(fields["max_tokens"] as? Int == 64 && fields["repetition_penalty"] as? Double == 1.1 && fields["stop"] as? [String] == ["\n"])
        #expect(try OllamaConversion.samplingFields(["num_predict": -1] as [String: Any]).isEmpty)
        #expect(try OllamaConversion.samplingFields(nil).isEmpty)
        #expect(throws: OllamaError.self) { try OllamaConversion.samplingFields(["temperature": "hot"] as [String: Any]) }
        #expect(throws: OllamaError.self) { try OllamaConversion.samplingFields([1, 2]) }
    }

    @Test("keep_alive: seconds or a Go duration; negative is forever; anything else a 400")
    func keepAlive() throws {
        #expect(try OllamaConversion.keepAlive(300) == .seconds(300))
        #expect(try OllamaConversion.keepAlive(0) == .seconds(0))
        #expect(try OllamaConversion.keepAlive(-1) == .never)
        #expect(try OllamaConversion.keepAlive("5m") == .seconds(300))
        #expect(try OllamaConversion.keepAlive("1h30m") == .seconds(5400))
        #expect(try OllamaConversion.keepAlive("1.5s") == .seconds(2))
        #expect(try OllamaConversion.keepAlive("500ms") == .seconds(1))
        #expect(try OllamaConversion.keepAlive("0") == .seconds(0))
        #expect(try OllamaConversion.keepAlive("-1m") == .never)
        #expect(try OllamaConversion.keepAlive(nil) == nil)
        for bad: Any in ["5 minutes", "m", "", true, ["5m"]] {
            #expect(throws: OllamaError.self) { try OllamaConversion.keepAlive(bad) }
        }
        // As JSONSerialization reads a body: 0.0 is a number, true is not.
        let parsed = try JSONSerialization.jsonObject(with: Data(#"{"zero": 0.0, "one": 1, "yes": true}"#.utf8)) as? [String: Any] ?? [:]
        #expect(try OllamaConversion.keepAlive(parsed["zero"]) == .seconds(0))
        #expect(try OllamaConversion.keepAlive(parsed["one"]) == .seconds(1))
        #expect(throws: OllamaError.self) { try OllamaConversion.keepAlive(parsed["yes"]) }
    }

    @Test("format: json is JSON mode, an object a JSON schema")
    func format() throws {
        #expect(try OllamaConversion.responseFormat("json")?["type"] as? String == "json_object")
        let schema = try OllamaConversion.responseFormat(["type": "object"] as [String: Any])
        #expect(schema?["type"] as? String == "json_schema")
        #expect(try OllamaConversion.responseFormat(nil) == nil && OllamaConversion.responseFormat("") == nil)
        #expect(throws: OllamaError.self) { try OllamaConversion.responseFormat("xml") }
    }

    @Test("messages: images become image parts, tool calls get JSON text arguments, tool_name becomes name")
    func messages() throws {
        let converted = try OllamaConversion.messages(
            [
                ["role": "user", "content": "look", "images": ["aGk="]],
                ["role": "assistant", "content": "", "tool_calls": [["function": ["name": "f", "arguments": ["x": 1]]]]],
                ["role": "tool", "content": "2", "tool_name": "f"],
            ] as [Any])
        let parts = converted[0]["content"] as? [[String: Any]]
        #expect(parts?.count == 2 && (parts?[1]["image_url"] as? [String: Any])?["url"] as? String == "data:image/png;base64,aGk=")
        let call = (converted[1]["tool_calls"] as? [[String: Any]])?.first
        #expect((call?["function"] as? [String: Any])?["arguments"] as? String == #"{"x":1}"#)
        #expect(converted[2]["name"] as? String == "f" && converted[2]["tool_name"] == nil)
        #expect(throws: OllamaError.self) { try OllamaConversion.messages([["content": "no role"]] as [Any]) }
    }

    @Test("the engine's SSE chunks: text, thinking, tool calls assembled from pieces, finish reason and usage")
    func stream() throws {
        var reader = OpenAIStreamReader(kind: .chat)
        #expect(try reader.read(#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#).content == "")
        #expect(try reader.read(#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#).content == "Hel")
        #expect(try reader.read(#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#).thinking == "hmm")
        _ = try reader.read(
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"add","arguments":"{\"a\":"}}]}}]}"#)
        _ = try reader.read(#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#)
        _ = try reader.read(#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#)
        _ = try reader.read(#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#)
        #expect(reader.finishReason == "length" && reader.promptTokens == 5 && reader.completionTokens == 3)
        let function = reader.toolCalls.first?["function"] as? [String: Any]
        #expect(function?["name"] as? String == "add" && (function?["arguments"] as? [String: Any])?["a"] as? Int == 1)
        #expect(OllamaConversion.doneReason(reader.finishReason) == "length" && OllamaConversion.doneReason("stop") == "stop")
        #expect(throws: OllamaError.self) { try reader.read("not json") }
        #expect(throws: OllamaError.self) { try reader.read(#"{"error":{"message":"bad"}}"#) }
        var completion = OpenAIStreamReader(kind: .completion)
        #expect(try completion.read(#"{"choices":[{"index":0,"text":"abc"}]}"#).content == "abc")
    }

    @Test("a pull's events become Ollama's progress lines")
    func pull() {
        func event(_ kind: PullEvent.Kind, file: PullEvent.FileProgress? = nil, error: PullEvent.Failure? = nil) -> PullEvent {
            PullEvent(
                event: kind, jobID: "j", source: "huggingface", repo: "acme/tiny", revision: "main", state: .downloading, file: file, error: error)
        }
        var progress = OllamaPullProgress()
        let first = progress.lines(for: event(.status))
        #expect(first.map { $0["status"] as? String } == ["pulling manifest"])
        let moving = progress.lines(
            for: event(.progress, file: .init(path: "model.safetensors", completedBytes: 10, totalBytes: 100, state: "downloading")))
        #expect(moving.count == 1 && moving[0]["status"] as? String == "pulling model.safetensors")
        #expect(
            moving[0]["digest"] as? String == "model.safetensors" && moving[0]["completed"] as? Int64 == 10 && moving[0]["total"] as? Int64 == 100)
        let present = progress.lines(for: event(.file, file: .init(path: "config.json", completedBytes: 0, totalBytes: 5, state: "present")))
        #expect(present[0]["completed"] as? Int64 == 5)
        #expect(progress.lines(for: event(.done)).map { $0["status"] as? String } == ["verifying sha256 digest", "writing manifest", "success"])
        var failing = OllamaPullProgress()
        let failed = failing.lines(for: event(.error, error: .init(code: "repoNotFound", message: "no such repository")))
        #expect(failed.last?["error"] as? String == "no such repository")
    }

    @Test("parameter sizes and GGUF types as Ollama writes them")
    func facts() {
        #expect(OllamaModelFacts.humanNumber(494_032_768) == "494.03M")
        #expect(OllamaModelFacts.humanNumber(7_615_616_512) == "7.6B")
        #expect(OllamaModelFacts.humanNumber(8_000_000_000) == "8B")
        #expect(OllamaModelFacts.humanNumber(120_000) == "120K")
        #expect(OllamaModelFacts.humanNumber(999) == "999")
        #expect(OllamaModelFacts.ggufType("qwen2.5-0.5b-instruct-q4_k_m.gguf") == "Q4_K_M")
        #expect(OllamaModelFacts.ggufType("model.gguf") == "")
    }

    @Test("errors are {\"error\": ...}; durations are nanoseconds")
    func shapes() throws {
        let error = OllamaError.modelNotFound("x")
        let object = try JSONSerialization.jsonObject(with: Data(error.body.readableBytesView)) as? [String: String]
        #expect(object == ["error": "model \"x\" not found, try pulling it first"] && error.status == .notFound)
        #expect(OllamaJSON.nanoseconds(.milliseconds(1500)) == 1_500_000_000)
        #expect(OllamaJSON.time(Date(timeIntervalSince1970: 1_700_000_000.25)) == "2023-11-14T22:13:20.250000Z")
        #expect(OllamaJSON.time(.distantFuture) == "4001-01-01T00:00:00.000000Z")
    }
}

private func * (text: String, count: Int) -> String { String(repeating: text, count: count) }
