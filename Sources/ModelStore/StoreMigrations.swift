import GRDB

/// The store's schema, as an ordered list of migrations. Never edit a released migration: add one.
enum StoreMigrations {
    static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()

        migrator.registerMigration("v1-models") { db in
            try db.execute(
                sql: """
                    CREATE TABLE models (
                        id INTEGER PRIMARY KEY,
                        source TEXT NOT NULL CHECK (source IN ('huggingface', 'modelscope', 'local')),
                        repo TEXT NOT NULL,
                        created_at REAL NOT NULL,
                        UNIQUE (source, repo)
                    );
                    CREATE TABLE versions (
                        id INTEGER PRIMARY KEY,
                        model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
                        requested_revision TEXT NOT NULL,
                        "commit" TEXT NOT NULL,
                        state TEXT NOT NULL CHECK (state IN ('pending', 'downloading', 'ready', 'failed', 'damaged')),
                        path TEXT,
                        total_bytes INTEGER NOT NULL DEFAULT 0,
                        error TEXT,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        ready_at REAL,
                        UNIQUE (model_id, "commit")
                    );
                    CREATE TABLE files (
                        id INTEGER PRIMARY KEY,
                        version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
                        path TEXT NOT NULL,
                        size INTEGER NOT NULL CHECK (size >= 0),
                        hash TEXT NOT NULL,
                        hash_kind TEXT NOT NULL CHECK (hash_kind IN ('sha256', 'git-sha1')),
                        verified INTEGER NOT NULL DEFAULT 0,
                        UNIQUE (version_id, path)
                    );
                    CREATE INDEX files_by_hash ON files(hash);
                    """)
        }

        migrator.registerMigration("v2-runs") { db in
            try db.execute(
                sql: """
                    CREATE TABLE runs (
                        id TEXT PRIMARY KEY,
                        name TEXT NOT NULL UNIQUE,
                        version_id INTEGER REFERENCES versions(id) ON DELETE SET NULL,
                        model TEXT NOT NULL,
                        engine TEXT NOT NULL,
                        options TEXT NOT NULL DEFAULT '{}',
                        pid INTEGER,
                        process_start_time INTEGER,
                        port INTEGER,
                        state TEXT NOT NULL CHECK (state IN ('starting', 'ready', 'stopping', 'stopped', 'failed')),
                        desired_state TEXT NOT NULL CHECK (desired_state IN ('running', 'stopped')),
                        restarts INTEGER NOT NULL DEFAULT 0,
                        exit_status INTEGER,
                        reason TEXT,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL
                    );
                    CREATE INDEX runs_by_desired_state ON runs(desired_state);
                    """)
        }

        migrator.registerMigration("v3-api-keys") { db in
            try db.execute(
                sql: """
                    CREATE TABLE api_keys (
                        id TEXT PRIMARY KEY,
                        name TEXT NOT NULL UNIQUE,
                        prefix TEXT NOT NULL,
                        hash TEXT NOT NULL UNIQUE,
                        scope TEXT NOT NULL CHECK (scope IN ('inference', 'admin')),
                        rate_per_minute INTEGER,
                        created_at REAL NOT NULL,
                        last_used_at REAL,
                        revoked_at REAL
                    );
                    """)
        }
        migrator.registerMigration("v4-file-source-commit") { db in
            // ModelScope lists, per file, the commit it came from; recorded with the file.
            try db.execute(sql: "ALTER TABLE files ADD COLUMN source_commit TEXT")
        }
        migrator.registerMigration("v5-run-keep-alive") { db in
            // How long a run stays loaded without requests (NULL: until stopped), and whether the gateway
            // started it on demand (such runs may be evicted to make room for another).
            try db.execute(
                sql: """
                    ALTER TABLE runs ADD COLUMN keep_alive INTEGER CHECK (keep_alive IS NULL OR keep_alive >= 0);
                    ALTER TABLE runs ADD COLUMN on_demand INTEGER NOT NULL DEFAULT 0;
                    """)
        }
        migrator.registerMigration("v6-sessions") { db in
            // Conversations: messages form a tree (an edited user message starts a sibling branch), and the
            // session's head is the last message of the branch in use. `owner` is the id of the API key that
            // made the session (NULL when made without a key: no keys existed, or the control socket).
            try db.execute(
                sql: """
                    CREATE TABLE sessions (
                        id TEXT PRIMARY KEY,
                        name TEXT UNIQUE,
                        owner TEXT,
                        model TEXT NOT NULL,
                        system TEXT,
                        options TEXT NOT NULL DEFAULT '{}',
                        head_id INTEGER,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL
                    );
                    CREATE INDEX sessions_by_owner ON sessions(owner, created_at);
                    CREATE TABLE session_messages (
                        id INTEGER PRIMARY KEY,
                        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                        parent_id INTEGER REFERENCES session_messages(id) ON DELETE CASCADE,
                        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
                        content TEXT NOT NULL,
                        partial INTEGER NOT NULL DEFAULT 0,
                        finish_reason TEXT,
                        prompt_tokens INTEGER,
                        completion_tokens INTEGER,
                        created_at REAL NOT NULL
                    );
                    CREATE INDEX session_messages_by_session ON session_messages(session_id);
                    CREATE INDEX session_messages_by_parent ON session_messages(parent_id);
                    """)
        }
        migrator.registerMigration("v7-upstreams") { db in
            // Servers the gateway forwards to besides local runs (docs/gateway.md). A provider's key is never
            // stored: only the name of the environment variable or the path of the file that holds it.
            try db.execute(
                sql: """
                    CREATE TABLE upstreams (
                        name TEXT PRIMARY KEY,
                        kind TEXT NOT NULL CHECK (kind IN ('openai', 'azure', 'ollama', 'modeld')),
                        url TEXT NOT NULL,
                        api_key_env TEXT,
                        api_key_file TEXT,
                        api_version TEXT,
                        models TEXT NOT NULL DEFAULT '[]',
                        discover INTEGER NOT NULL DEFAULT 0,
                        discovered TEXT NOT NULL DEFAULT '[]',
                        discovered_at REAL,
                        priority INTEGER NOT NULL DEFAULT 0,
                        weight INTEGER NOT NULL DEFAULT 1 CHECK (weight >= 0),
                        cost_in REAL NOT NULL DEFAULT 0,
                        cost_out REAL NOT NULL DEFAULT 0,
                        max_concurrency INTEGER CHECK (max_concurrency IS NULL OR max_concurrency > 0),
                        timeout REAL NOT NULL DEFAULT 30 CHECK (timeout > 0),
                        enabled INTEGER NOT NULL DEFAULT 1,
                        created_at REAL NOT NULL,
                        updated_at REAL NOT NULL,
                        CHECK (api_key_env IS NULL OR api_key_file IS NULL)
                    );
                    CREATE TABLE model_groups (
                        name TEXT PRIMARY KEY,
                        targets TEXT NOT NULL DEFAULT '[]',
                        strategy TEXT,
                        created_at REAL NOT NULL
                    );
                    """)
        }
        migrator.registerMigration("v8-usage-and-quotas") { db in
            // One row per request that reached a backend (``UsageRecord``); rows older than the retention are
            // summed into `usage_daily` per (day, key, model, backend) and deleted. `key_id` '' is no key (the
            // control socket, or no key exists). Each key's quotas: tokens per UTC day and month, a spending cap
            // per UTC month, and the models it may name (a JSON array; NULL: any).
            try db.execute(
                sql: """
                    CREATE TABLE usage (
                        id INTEGER PRIMARY KEY,
                        at TEXT NOT NULL,
                        key_id TEXT NOT NULL DEFAULT '',
                        model TEXT NOT NULL,
                        backend TEXT NOT NULL,
                        route TEXT NOT NULL,
                        prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),
                        completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
                        latency_ms REAL NOT NULL,
                        status INTEGER NOT NULL,
                        cost REAL NOT NULL DEFAULT 0
                    );
                    CREATE INDEX usage_by_time ON usage(at);
                    CREATE TABLE usage_daily (
                        day TEXT NOT NULL,
                        key_id TEXT NOT NULL,
                        model TEXT NOT NULL,
                        backend TEXT NOT NULL,
                        requests INTEGER NOT NULL,
                        errors INTEGER NOT NULL,
                        prompt_tokens INTEGER NOT NULL,
                        completion_tokens INTEGER NOT NULL,
                        latency_ms REAL NOT NULL,
                        cost REAL NOT NULL,
                        PRIMARY KEY (day, key_id, model, backend)
                    );
                    ALTER TABLE api_keys ADD COLUMN tokens_per_day INTEGER;
                    ALTER TABLE api_keys ADD COLUMN tokens_per_month INTEGER;
                    ALTER TABLE api_keys ADD COLUMN spend_cap REAL;
                    ALTER TABLE api_keys ADD COLUMN allowed_models TEXT;
                    """)
        }
        return migrator
    }()

    /// Applies pending migrations, refusing a database that a newer modeld has migrated.
    static func migrate(_ writer: some DatabaseWriter, upTo target: String?, path: String) throws {
        let known = migrator.migrations
        let applied: [String]
        do {
            applied = try writer.read { db in
                try db.tableExists("grdb_migrations")
                    ? String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") : []
            }
        } catch {
            throw StoreError(code: .cannotOpen, message: "cannot read the store at \(path): \(error)")
        }
        let unknown = applied.filter { !known.contains($0) }
        guard unknown.isEmpty else {
            throw StoreError(
                code: .schemaTooNew,
                message: "the store at \(path) was written by a newer modeld (unknown schema migrations: "
                    + "\(unknown.joined(separator: ", "))); upgrade modeld, or point --data-dir elsewhere")
        }
        do {
            if let target {
                try migrator.migrate(writer, upTo: target)
            } else {
                try migrator.migrate(writer)
            }
        } catch {
            throw StoreError(code: .migrationFailed, message: "cannot migrate the store at \(path): \(error)")
        }
    }
}
