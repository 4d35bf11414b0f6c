import Foundation
import GRDB

/// One conversation session as stored: its model, system prompt and sampling options, and the head of the branch
/// in use (its last message).
package struct SessionRecord: Sendable, Hashable, Codable, FetchableRecord, PersistableRecord {
    package static let databaseTableName = "sessions"
    package var id: String
    /// A name unique among sessions, to resume one by name (`modelctl chat --session NAME`).
    package var name: String?
    /// The id of the API key that made it; nil when made without a key.
    package var owner: String?
    package var model: String
    package var system: String?
    /// The sampling options as JSON (``ModeldAPI/SessionOptions``).
    package var options: String
    /// The last message of the branch in use; nil while the session has none.
    package var headID: Int64?
    package var createdAt: Date
    package var updatedAt: Date

    package init(id: String, name: String?, owner: String?, model: String, system: String?, options: String, createdAt: Date = Date()) {
        self.id = id
        self.name = name
        self.owner = owner
        self.model = model
        self.system = system
        self.options = options
        self.createdAt = createdAt
        self.updatedAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case id, name, owner, model, system, options
        case headID = "head_id"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }
}

/// One message of a session: a user message or a reply. Its parent is the message before it on its branch.
package struct SessionMessageRecord: Sendable, Hashable, Codable, FetchableRecord, MutablePersistableRecord {
    package static let databaseTableName = "session_messages"
    package var id: Int64?
    package var sessionID: String
    package var parentID: Int64?
    /// `user` or `assistant`.
    package var role: String
    package var content: String
    /// A reply cut off (the client went away, a stop, the engine broke off) before it was complete.
    package var partial: Bool
    package var finishReason: String?
    package var promptTokens: Int?
    package var completionTokens: Int?
    package var createdAt: Date

    package init(
        sessionID: String, parentID: Int64?, role: String, content: String, partial: Bool = false, finishReason: String? = nil,
        promptTokens: Int? = nil, completionTokens: Int? = nil
    ) {
        self.sessionID = sessionID
        self.parentID = parentID
        self.role = role
        self.content = content
        self.partial = partial
        self.finishReason = finishReason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        createdAt = Date()
    }

    package mutating func didInsert(_ inserted: InsertionSuccess) {
        id = inserted.rowID
    }

    enum CodingKeys: String, CodingKey {
        case id, role, content, partial
        case sessionID = "session_id"
        case parentID = "parent_id"
        case finishReason = "finish_reason"
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case createdAt = "created_at"
    }
}

/// A session with every one of its messages (all branches), as read in one transaction.
package struct SessionTree: Sendable {
    package var session: SessionRecord
    package var messages: [SessionMessageRecord]

    package init(session: SessionRecord, messages: [SessionMessageRecord]) {
        self.session = session
        self.messages = messages
    }

    /// The branch in use: its messages from the first to the head.
    package var branch: [SessionMessageRecord] { path(to: session.headID) }

    /// The messages from the first to `id`, oldest first; empty for nil or an id not in the session.
    package func path(to id: Int64?) -> [SessionMessageRecord] {
        let byID = Dictionary(messages.map { ($0.id ?? 0, $0) }, uniquingKeysWith: { first, _ in first })
        var path: [SessionMessageRecord] = []
        var next = id
        while let current = next, let message = byID[current], path.count <= messages.count {
            path.append(message)
            next = message.parentID
        }
        return path.reversed()
    }

    /// The other messages with the same parent as `message` (the other branches at that point), oldest first.
    package func alternatives(to message: SessionMessageRecord) -> [Int64] {
        messages.filter { $0.parentID == message.parentID && $0.id != message.id }.compactMap(\.id)
    }
}

extension Store {
    /// Records a new session. - Throws: ``StoreError`` `.conflict` when its name is taken.
    package func createSession(_ record: SessionRecord) async throws {
        do {
            try await write { db in try record.insert(db) }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            throw StoreError(code: .conflict, message: "a session named \(record.name ?? "") exists already")
        }
    }

    /// Sessions newest first, a page at a time, with the total; only `owner`'s when given.
    package func sessions(owner: String?, limit: Int, offset: Int) async throws -> (sessions: [SessionRecord], total: Int) {
        try await read { db in
            var request = SessionRecord.all()
            if let owner { request = request.filter(Column("owner") == owner) }
            let total = try request.fetchCount(db)
            let page = try request.order(Column("created_at").desc, Column("id").desc).limit(limit, offset: offset).fetchAll(db)
            return (page, total)
        }
    }

    /// How many messages each session's branch in use holds, by session id.
    package func sessionMessageCounts(_ ids: [String]) async throws -> [String: Int] {
        try await read { db in
            var counts: [String: Int] = [:]
            for id in ids {
                guard let tree = try Self.tree(db, id) else { continue }
                counts[id] = tree.branch.count
            }
            return counts
        }
    }

    /// A session by id or name, with all its messages. - Throws: ``StoreError`` `.notFound`.
    package func session(_ idOrName: String) async throws -> SessionTree {
        try await read { db in
            guard let tree = try Self.tree(db, idOrName) else { throw Self.noSession(idOrName) }
            return tree
        }
    }

    /// Deletes a session and its messages. - Throws: ``StoreError`` `.notFound`.
    package func deleteSession(_ id: String) async throws {
        try await write { db in
            guard try SessionRecord.deleteOne(db, key: id) else { throw Self.noSession(id) }
        }
    }

    /// Adds a message after `message.parentID` and makes it the session's head.
    /// - Returns: the message with its id.
    package func appendSessionMessage(_ message: SessionMessageRecord) async throws -> SessionMessageRecord {
        try await write { db in
            var message = message
            try message.insert(db)
            try Self.setHead(db, session: message.sessionID, to: message.id)
            return message
        }
    }

    /// Makes `messageID` (a message of the session, or nil for none) the session's head; with `dropAfter`, the
    /// messages after it on the branch in use are deleted (with the branches that grow from them).
    /// - Throws: ``StoreError`` `.notFound` for a message not in the session (or, with `dropAfter`, not on its branch).
    package func moveSessionHead(_ sessionID: String, to messageID: Int64?, dropAfter: Bool) async throws -> SessionTree {
        try await write { db in
            guard let tree = try Self.tree(db, sessionID) else { throw Self.noSession(sessionID) }
            let branch = tree.branch
            if let messageID {
                let candidates = dropAfter ? branch : tree.messages
                guard candidates.contains(where: { $0.id == messageID }) else {
                    throw StoreError(
                        code: .notFound,
                        message: "message \(messageID) is not \(dropAfter ? "on the branch in use" : "a message") of session \(sessionID)")
                }
            }
            if dropAfter {
                let keep = branch.firstIndex { $0.id == messageID }.map { $0 + 1 } ?? 0
                let dropped = branch[keep...].compactMap(\.id)
                // The head first: the session points at it.
                try Self.setHead(db, session: sessionID, to: messageID)
                if let first = dropped.first { _ = try SessionMessageRecord.deleteOne(db, key: first) }
            } else {
                try Self.setHead(db, session: sessionID, to: messageID)
            }
            guard let moved = try Self.tree(db, sessionID) else { throw Self.noSession(sessionID) }
            return moved
        }
    }

    private static func tree(_ db: Database, _ idOrName: String) throws -> SessionTree? {
        guard let session = try SessionRecord.filter(Column("id") == idOrName || Column("name") == idOrName).fetchOne(db) else {
            return nil
        }
        let messages = try SessionMessageRecord.filter(Column("session_id") == session.id).order(Column("id")).fetchAll(db)
        return SessionTree(session: session, messages: messages)
    }

    private static func setHead(_ db: Database, session: String, to head: Int64?) throws {
        try db.execute(
            sql: "UPDATE sessions SET head_id = ?, updated_at = ? WHERE id = ?", arguments: [head, Date(), session])
    }

    private static func noSession(_ id: String) -> StoreError {
        StoreError(code: .notFound, message: "no session \(id): GET /api/v1/sessions lists them")
    }
}
