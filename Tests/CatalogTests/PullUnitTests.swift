import Foundation
import ModeldAPI
import Testing

@testable import Catalog
@testable import Downloads
@testable import Hubs
@testable import ModelStore

@Suite("Pull building blocks")
struct PullUnitTests {
    @Test(
        "hub file names",
        arguments: [
            ("config.json", true), ("a/b/c.txt", true), ("..x", true), ("../x", false), ("/etc/x", false), ("a/../../x", false),
            ("", false), ("a\0b", false), ("a\\b", false), ("a//b", false), ("./a", false),
        ])
    func hubPaths(name: String, valid: Bool) {
        #expect(((try? HubPath(name, repo: "r/r")) != nil) == valid)
    }

    @Test("file selection prefers safetensors and applies globs")
    func selection() {
        let paths = ["config.json", "model.safetensors", "pytorch_model.bin", "consolidated.pth", "sub/model.pt", "training_args.bin"]
        #expect(FileSelection().choose(paths) == ["config.json", "model.safetensors", "sub/model.pt"])
        #expect(FileSelection(include: ["*.bin"]).choose(paths) == ["pytorch_model.bin", "training_args.bin"])
        #expect(FileSelection(exclude: ["*.json"]).choose(["config.json", "a.txt"]) == ["a.txt"])
        #expect(FileSelection(include: ["sub/"]).choose(paths) == ["sub/model.pt"])
    }

    @Test("environment: HF_ENDPOINT without trailing slash, HF_TOKEN, legacy name, token file; ModelScope endpoint fallbacks")
    func environment() throws {
        #expect(
            HuggingFaceSettings.fromEnvironment(["HF_ENDPOINT": "https://hf-mirror.com/", "HOME": "/nonexistent"]).endpoint == "https://hf-mirror.com"
        )
        #expect(HuggingFaceSettings.fromEnvironment(["HF_TOKEN": "a", "HUGGING_FACE_HUB_TOKEN": "b"]).token == "a")
        #expect(HuggingFaceSettings.fromEnvironment(["HUGGING_FACE_HUB_TOKEN": "b", "HOME": "/nonexistent"]).token == "b")
        let home = FileManager.default.temporaryDirectory.appending(path: "hfhome-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        try "hf_from_file\n".write(to: home.appending(path: "token"), atomically: true, encoding: .utf8)
        let fromFile = HuggingFaceSettings.fromEnvironment(["HF_HOME": home.path])
        #expect(fromFile.token == "hf_from_file")
        #expect(fromFile.endpoint == "https://huggingface.co")
        #expect(ModelScopeSettings.fromEnvironment(["MODELSCOPE_ENDPOINT": "http://ms.local:8080/"]).endpoint == "http://ms.local:8080")
        #expect(ModelScopeSettings.fromEnvironment(["MODELSCOPE_DOMAIN": "modelscope.example"]).endpoint == "https://modelscope.example")
        #expect(ModelScopeSettings.fromEnvironment([:]).endpoint == "https://www.modelscope.cn")
    }

    @Test("Retry-After and RateLimit headers")
    func retryAfter() {
        let policy = RetryPolicy.standard
        #expect(policy.serverDelay(headers: ["retry-after": "3"]) == .seconds(3))
        #expect(policy.serverDelay(headers: ["ratelimit": "\"api\";r=0;t=55"]) == .seconds(56))
        #expect(policy.serverDelay(headers: [:]) == nil)
        #expect(policy.delay(afterFailures: 1) == .seconds(1))
        #expect(policy.delay(afterFailures: 9) == .seconds(8))
    }

    @Test("Link rel=next, origins, percent-encoding")
    func httpHelpers() {
        #expect(nextLink("<https://h/api/x?cursor=2>; rel=\"next\"") == "https://h/api/x?cursor=2")
        #expect(nextLink("<https://h/a>; rel=\"prev\"") == nil)
        #expect(originOf("http://127.0.0.1:80/x") == originOf("http://127.0.0.1/y"))
        #expect(originOf("http://127.0.0.1:81/x") != originOf("http://127.0.0.1:82/x"))
        #expect(percentEncodeWhole("refs/pr/1") == "refs%2Fpr%2F1")
        #expect(percentEncodePath("sub dir/a b.txt") == "sub%20dir/a%20b.txt")
    }

    @Test("an origin read without URLComponents is the one URLComponents reads")
    func originsAgree() throws {
        let urls = [
            "https://huggingface.co/api/models/a/b", "HTTPS://HuggingFace.CO:443/x?y=1#z", "http://127.0.0.1:8080",
            "http://cdn-lfs.hf.co/repos/a/b?X-Amz-Signature=1", "https://user:secret@hf.co/x", "https://hf.co@evil.example/x",
            "https://hf.co:/x", "https://mirror.example:8443?q", "https://b\u{fc}cher.example/x",
        ]
        for url in urls {
            let components = try #require(URLComponents(string: url))
            let scheme = try #require(components.scheme).lowercased()
            let host = try #require(components.host).lowercased()
            #expect(originOf(url) == "\(scheme)://\(host):\(components.port ?? (scheme == "https" ? 443 : 80))", "\(url)")
        }
        #expect(originOf("https://hf.co@evil.example/x") != originOf("https://hf.co/x"))
    }

    @Test("wire dates are written as JSONEncoder's .iso8601 writes them", arguments: [0, 1_795_000_000.75, 1_795_000_059.999])
    func wireDates(seconds: Double) throws {
        let date = Date(timeIntervalSince1970: seconds)
        let foundation = JSONEncoder()
        foundation.dateEncodingStrategy = .iso8601
        #expect(try WireJSON.encoder().encode([date]) == foundation.encode([date]))
    }

    @Test("git-sha1 and sha256 of known content")
    func hashes() {
        let git = ContentHasher(kind: .gitSHA1, size: 0)
        #expect(git.finalize() == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391", "git's empty blob")
        var sha = ContentHasher(kind: .sha256, size: 3)
        Array("abc".utf8).withUnsafeBytes { sha.update($0) }
        #expect(sha.finalize() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
