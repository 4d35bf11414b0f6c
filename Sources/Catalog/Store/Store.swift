import Foundation
import GRDB

/// The SQLite store: models, their versions and files, runs, and API keys.
///
/// One file (`<data>/modeld.sqlite`) in WAL mode with foreign keys on and a busy timeout, migrated
/// forward at start-up by ``StoreMigrations``. A file written by a newer modeld is refused rather than
/// guessed at.
package final class Store: Sendable {
    package let path: String
    let pool: DatabasePool
    /// Active API keys, kept in memory so that authenticating a request does not touch the database.
    let activeKeys = ActiveKeysCache()

    /// Opens (creating if needed) and migrates the store.
    /// - Parameters:
    ///   - path: the SQLite file.
    ///   - migrateUpTo: stop after this migration; only tests use it, to build old schemas.
    /// - Throws: ``StoreError`` when the file cannot be opened or was written by a newer modeld.
    package init(path: String, migrateUpTo: String? = nil) throws {
        self.path = path
        var configuration = Configuration()
        configuration.foreignKeysEnabled = true
        configuration.busyMode = .timeout(10)
        configuration.label = "modeld.store"
        configuration.prepareDatabase { db in
            // Durability without an fsync per transaction: WAL + NORMAL is safe against process crashes.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw StoreError(code: .cannotOpen, message: "cannot open the store at \(path): \(error)")
        }
        try StoreMigrations.migrate(pool, upTo: migrateUpTo, path: path)
    }

    /// The journal mode SQLite reports (`wal` once open).
    package func journalMode() throws -> String {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// The identifiers of the applied migrations, oldest first.
    package func appliedMigrations() throws -> [String] {
        try pool.read { db in try StoreMigrations.migrator.appliedMigrations(db) }
    }

    /// Reads with a consistent snapshot.
    package func read<T: Sendable>(_ body: @Sendable (Database) throws -> T) throws -> T {
        try pool.read(body)
    }

    /// Writes in one transaction.
    package func write<T: Sendable>(_ body: @Sendable (Database) throws -> T) throws -> T {
        try pool.write(body)
    }

    /// Checkpoints the WAL into the main file; called on clean shutdown.
    package func close() throws {
        try pool.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        try pool.close()
    }
}

/// A store failure, printed as one sentence.
package struct StoreError: Error, CustomStringConvertible {
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        package static let cannotOpen = Code(name: "cannotOpen")
        package static let schemaTooNew = Code(name: "schemaTooNew")
        package static let migrationFailed = Code(name: "migrationFailed")
        package static let notFound = Code(name: "notFound")
        package static let conflict = Code(name: "conflict")
        package var description: String { name }
    }

    package var code: Code
    package var message: String

    package init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    package var description: String { message }
}
