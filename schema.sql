-- Loop Gateway: the whole SQLite schema.
--
-- The file is a sequence of migrations. Each starts with a line `-- migration: N` and is
-- applied once, in one transaction, to a database whose `PRAGMA user_version` is below N;
-- user_version then becomes N. Never edit a migration that has shipped: append a new one.
-- Times are unix milliseconds (UTC); money is integer micro-dollars.

-- migration: 1
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Session tokens are stored only as SHA-256 hashes.
CREATE TABLE sessions (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);
CREATE INDEX sessions_expires ON sessions(expires_at);
CREATE INDEX sessions_user ON sessions(user_id);

-- migration: 2
CREATE TABLE agent_runs (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN
                        ('queued','running','awaiting_approval','complete','error','interrupted')),
    group_id        TEXT,
    conversation_id TEXT,
    input           TEXT NOT NULL,
    output          TEXT,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_micros     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agent_runs_created ON agent_runs(created_at DESC);
CREATE INDEX agent_runs_status_created ON agent_runs(status, created_at DESC);
CREATE INDEX agent_runs_source_created ON agent_runs(source, created_at DESC);
