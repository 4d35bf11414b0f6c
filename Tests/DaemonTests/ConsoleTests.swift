import Foundation
import NIOCore
import Testing

@testable import Daemon

@Suite("Web console")
struct ConsoleTests {
    @Test("the console compiled into modeld equals console/ (run scripts/embed-console.py after editing it)")
    func compiledFilesAreCurrent() throws {
        let root = URL(filePath: #filePath).deletingLastPathComponent().appending(path: "../../console").standardized
        let enumerator = try #require(FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey]))
        var names: Set<String> = []
        for case let url as URL in enumerator where try url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile == true {
            let name = String(url.standardized.path.dropFirst(root.path.count + 1))
            names.insert(name)
            let compiled = try #require(ConsoleAssets.files[name], "\(name) is not compiled in: run scripts/embed-console.py")
            #expect(Array(compiled.bytes.readableBytesView) == Array(try Data(contentsOf: url)), "\(name) is stale: run scripts/embed-console.py")
        }
        #expect(names.contains("index.html") && names.contains("app.js"))
        #expect(Set(ConsoleAssets.files.keys) == names, "compiled files that console/ no longer has: run scripts/embed-console.py")
    }

    @Test("content types by extension")
    func contentTypes() {
        #expect(ConsoleAssets.contentType(of: "index.html") == "text/html; charset=utf-8")
        #expect(ConsoleAssets.contentType(of: "app.css") == "text/css; charset=utf-8")
        #expect(ConsoleAssets.contentType(of: "views/runs.js") == "text/javascript; charset=utf-8")
        #expect(ConsoleAssets.contentType(of: "README") == "application/octet-stream")
    }

    @Test("If-None-Match lists, weak or strong, and *")
    func entityTags() {
        let tag = "\"abc\""
        #expect(ConsoleController.matches("\"abc\"", etag: tag))
        #expect(ConsoleController.matches("\"x\", W/\"abc\"", etag: tag))
        #expect(ConsoleController.matches("*", etag: tag))
        #expect(!ConsoleController.matches("\"abcd\"", etag: tag))
        #expect(!ConsoleController.matches("abc", etag: tag))
    }

    @Test("Accept-Encoding accepts gzip unless its quality is 0")
    func gzipNegotiation() {
        #expect(ConsoleController.acceptsGzip("gzip, deflate, br"))
        #expect(ConsoleController.acceptsGzip("br;q=1.0, GZIP;q=0.5"))
        #expect(ConsoleController.acceptsGzip("*"))
        #expect(!ConsoleController.acceptsGzip("gzip;q=0"))
        #expect(!ConsoleController.acceptsGzip("identity"))
        #expect(!ConsoleController.acceptsGzip(nil))
        #expect(!ConsoleController.acceptsGzip("x-gzip-not"))
    }

    @Test("the console's paths are public, nothing else is")
    func publicPaths() {
        #expect(ConsoleController.isPublic(path: "/"))
        #expect(ConsoleController.isPublic(path: "/ui/app.js"))
        #expect(!ConsoleController.isPublic(path: "/api/v1/keys"))
        #expect(!ConsoleController.isPublic(path: "/uix"))
    }
}
