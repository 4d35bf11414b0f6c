import Catalog
import Testing

@testable import Launchers

@Suite("Engine kinds")
struct EngineKindTests {
    @Test("every engine the catalog accepts has a launcher kind, and no more")
    func namesMatchTheCatalog() {
        #expect(Set(EngineKind.allCases.map(\.rawValue)) == knownEngines)
    }
}
