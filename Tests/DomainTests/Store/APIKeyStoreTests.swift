import Foundation
import Testing

@testable import ModelStore

@Suite("API keys in the store")
struct APIKeyStoreTests {
    @Test("keys are answered from memory, and a create or revoke is seen at once")
    func cacheFollowsChanges() async throws {
        let directory = try TemporaryDirectory()
        let store = try Store(path: directory.path("modeld.sqlite"))
        #expect(try await store.hasActiveAPIKeys() == false)
        let (record, key) = try await store.createAPIKey(name: "app", scope: "inference")
        #expect(try await store.authenticate(key: key)?.id == record.id)
        _ = try await store.revokeAPIKey("app")
        #expect(try await store.authenticate(key: key) == nil)
        #expect(try await store.hasActiveAPIKeys() == false)
    }

    @Test("a reload that read the store before an invalidation is not kept after it")
    func staleReloadDropped() {
        let cache = ActiveKeysCache()
        let (_, generation) = cache.lookup()
        // A create or revoke commits and invalidates while that reload is under way.
        cache.invalidate()
        cache.store([:], ifStill: generation)
        #expect(cache.lookup().byHash == nil)
        // A reload begun after the invalidation is kept.
        let (_, current) = cache.lookup()
        cache.store([:], ifStill: current)
        #expect(cache.lookup().byHash != nil)
    }
}
