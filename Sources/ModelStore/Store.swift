import Foundation
import GRDB
import ModeldAPI

/// The SQLite store: models, their versions and files, runs, and API keys.
///
/// One file (`<data>/modeld.sqlite`) in WAL mode with foreign keys on and a busy timeout, migrated
/// forward at start-up by ``StoreMigrations``. A file written by a newer modeld is refused rather than
/// guessed at. Reads and writes run on GRDB's own threads and are awaited, so that a slow disk or a lock held
/// by another connection never holds the daemon's event loops; only code on a thread of its own (an import)
/// uses the blocking forms.
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
        configuration.busyMode = .timeout(30)
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
    package func journalMode() async throws -> String {
        try await read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// The identifiers of the applied migrations, oldest first.
    package func appliedMigrations() async throws -> [String] {
        try await read { db in try StoreMigrations.migrator.appliedMigrations(db) }
    }

    /// Reads with a consistent snapshot, on one of the store's reader threads: the caller's thread (an event
    /// loop, in the daemon) is free meanwhile.
    package func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            pool.asyncRead { database in continuation.resume(with: Result { try body(database.get()) }) }
        }
    }

    /// Writes in one transaction on the store's writer thread (which waits out the busy timeout when another
    /// connection holds the lock): the caller's thread is free meanwhile. Writes run in the order they are called.
    package func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            write(body) { continuation.resume(with: $0) }
        }
    }

    /// Writes in one transaction on the store's writer thread without waiting for it: after every write called
    /// before it, before every write called after it. `completion` gets the outcome on that thread.
    package func write<T: Sendable>(
        _ body: @escaping @Sendable (Database) throws -> T, completion: @escaping @Sendable (Result<T, any Error>) -> Void
    ) {
        pool.asyncWrite(body) { _, result in completion(result) }
    }

    /// Waits until every write called before has finished (committed or failed).
    package func writesFinished() async {
        await withCheckedContinuation { continuation in
            pool.asyncWriteWithoutTransaction { _ in continuation.resume() }
        }
    }

    /// ``read(_:)`` for a thread that may block (an import's own thread); async code uses ``read(_:)``.
    @available(*, noasync, message: "blocks the calling thread: use read(_:)")
    package func readBlocking<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.read(body)
    }

    /// ``write(_:)`` for a thread that may block (an import's own thread); async code uses ``write(_:)``.
    @available(*, noasync, message: "blocks the calling thread: use write(_:)")
    package func writeBlocking<T>(_ body: (Database) throws -> T) throws -> T {
        try pool.write(body)
    }

    /// Checkpoints the WAL into the main file, after every write called before; called on clean shutdown,
    /// once nothing serves requests any more.
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

extension StoreError: APIErrorConvertible {
    /// No such record is a 404, a name taken a 409; a store that cannot be opened or migrated never reaches a request.
    package var apiError: APIError {
        let status =
            switch code {
            case .notFound: 404
            case .conflict: 409
            default: 500
            }
        return APIError(status: status, code: code.name, message: message)
    }
}
