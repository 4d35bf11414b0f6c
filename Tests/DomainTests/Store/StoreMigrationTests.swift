import Foundation
import GRDB
import Testing

@testable import ModelStore

@Suite("Store migrations")
struct StoreMigrationTests {
    @Test("store dates are written and read in GRDB's own text form", arguments: [0, 1_795_000_000.123, 1_795_000_059.999, -1.5])
    func storeDates(seconds: Double) throws {
        let date = Date(timeIntervalSince1970: seconds)
        let grdb = try #require(String.fromDatabaseValue(date.databaseValue))
        #expect(StoreDate.text(date) == grdb)
        let read = try #require(StoreDate.date(grdb.databaseValue))
        let expected = try #require(Date.fromDatabaseValue(grdb.databaseValue))
        #expect(abs(read.timeIntervalSince(expected)) < 0.0005)
        #expect(StoreDate.date("2026-11-22 03:04:05".databaseValue) == Date.fromDatabaseValue("2026-11-22 03:04:05".databaseValue))
    }

    @Test("a version written and read back keeps its dates")
    func versionDates() async throws {
        let directory = try TemporaryDirectory()
        let store = try Store(path: directory.path("modeld.sqlite"))
        let created = Date(timeIntervalSince1970: 1_795_000_000.5)
        let model = try await store.write { db in try ModelRecord(source: "huggingface", repo: "a/b", createdAt: created).insertAndFetch(db) }
        let stored = try await store.read { db in try String.fetchOne(db, sql: "SELECT created_at FROM models") }
        #expect(stored == "2026-11-18 11:06:40.500")
        #expect(try await store.read { db in try ModelRecord.fetchOne(db, key: model.id) }?.createdAt == created)
    }

    @Test("a fresh store is created in WAL mode with every migration and foreign keys on")
    func freshStore() async throws {
        let directory = try TemporaryDirectory()
        let store = try Store(path: directory.path("modeld.sqlite"))
        #expect(try await store.journalMode() == "wal")
        #expect(try await store.appliedMigrations() == StoreMigrations.migrator.migrations)
        let tables = try await store.read { db in try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") }
        for table in ["models", "versions", "files", "runs", "api_keys"] {
            #expect(tables.contains(table), "missing table \(table)")
        }
        // Foreign keys are enforced: a version for a model that does not exist is refused.
        await #expect(throws: DatabaseError.self) {
            try await store.write { db in
                var version = VersionRecord(modelID: 999, requestedRevision: "main", commit: String(repeating: "a", count: 40), state: .pending)
                try version.insert(db)
            }
        }
    }

    @Test("an older store migrates forward and keeps its rows")
    func forwardMigration() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("modeld.sqlite")
        do {
            let old = try Store(path: path, migrateUpTo: "v1-models")
            #expect(try await old.appliedMigrations() == ["v1-models"])
            let model = try await old.model(source: "huggingface", repo: "acme/tiny")
            try await old.write { db in
                var version = VersionRecord(
                    modelID: model.id!, requestedRevision: "main", commit: String(repeating: "b", count: 40), state: .ready)
                try version.insert(db)
            }
            try old.close()
        }
        let store = try Store(path: path)
        #expect(try await store.appliedMigrations() == StoreMigrations.migrator.migrations)
        let versions = try await store.localVersions()
        #expect(versions.count == 1)
        #expect(versions.first?.model.repo == "acme/tiny")
        #expect(versions.first?.version.state == .ready)
        // The table added by a later migration is usable.
        try await store.write { db in
            try db.execute(
                sql: """
                    INSERT INTO runs (id, name, model, engine, state, desired_state, created_at, updated_at)
                    VALUES ('r1', 'n1', 'acme/tiny', 'builtin', 'stopped', 'stopped', 0, 0)
                    """)
        }
    }

    @Test("a store written by a newer modeld is refused with a clear message, untouched")
    func newerSchemaRefused() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("modeld.sqlite")
        do {
            let store = try Store(path: path)
            try await store.write { db in
                try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v9-from-the-future')")
            }
            try store.close()
        }
        let error = try #require(throws: StoreError.self) { try Store(path: path) }
        #expect(error.code == .schemaTooNew)
        #expect(error.description.contains("newer modeld"))
        #expect(error.description.contains("v9-from-the-future"))
        // Refusing must not have changed the file: the future migration is still recorded.
        let queue = try DatabaseQueue(path: path)
        let identifiers = try await queue.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
        #expect(identifiers.contains("v9-from-the-future"))
    }

    @Test("a file that is not SQLite is refused with the path in the message")
    func garbageFile() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path("modeld.sqlite")
        try Data(repeating: 0x41, count: 8192).write(to: URL(filePath: path))
        let error = try #require(throws: StoreError.self) { try Store(path: path) }
        #expect(error.description.contains(path))
    }
}
