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

-- migration: 3
ALTER TABLE agent_runs ADD COLUMN stop_reason TEXT;
ALTER TABLE agent_runs ADD COLUMN error_code TEXT;
ALTER TABLE agent_runs ADD COLUMN model TEXT;
ALTER TABLE agent_runs ADD COLUMN metadata TEXT;
ALTER TABLE agent_runs ADD COLUMN cache_creation_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agent_runs ADD COLUMN cache_read_tokens INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agent_runs ADD COLUMN llm_calls INTEGER NOT NULL DEFAULT 0;

CREATE TABLE conversations (
    id         TEXT PRIMARY KEY,
    source     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- The history the model sees: one row per message, content as Messages API JSON blocks.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    run_id          TEXT,
    role            TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content         TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX messages_conversation ON messages(conversation_id, id);

-- Every model call (retries included), priced when it is made.
CREATE TABLE api_calls (
    id                    INTEGER PRIMARY KEY,
    run_id                TEXT REFERENCES agent_runs(id) ON DELETE SET NULL,
    provider              TEXT NOT NULL,
    model                 TEXT NOT NULL,
    input_tokens          INTEGER NOT NULL DEFAULT 0,
    output_tokens         INTEGER NOT NULL DEFAULT 0,
    cache_creation_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens     INTEGER NOT NULL DEFAULT 0,
    cost_micros           INTEGER NOT NULL DEFAULT 0,
    latency_ms            INTEGER NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error                 TEXT,
    created_at            INTEGER NOT NULL
);
CREATE INDEX api_calls_created ON api_calls(created_at);
CREATE INDEX api_calls_run ON api_calls(run_id);
CREATE INDEX api_calls_model_created ON api_calls(model, created_at);

CREATE TABLE tool_calls (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES agent_runs(id) ON DELETE CASCADE,
    tool_use_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    input       TEXT NOT NULL,
    output      TEXT NOT NULL,
    is_error    INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX tool_calls_run ON tool_calls(run_id, id);

-- Webhooks: the token is stored only as a SHA-256 hash; the signing secret is encrypted
-- (AES-256-GCM, Secrets service) because outbound signatures need it.
CREATE TABLE webhooks (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    platform       TEXT NOT NULL CHECK (platform IN ('generic', 'n8n', 'make')),
    token_hash     TEXT NOT NULL UNIQUE,
    token_hint     TEXT NOT NULL,
    events         TEXT NOT NULL,
    target_url     TEXT,
    signing_secret TEXT NOT NULL,
    enabled        INTEGER NOT NULL DEFAULT 1,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries(status, next_attempt_at);

CREATE TABLE webhook_logs (
    id          INTEGER PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    direction   TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    event       TEXT,
    delivery_id TEXT,
    status_code INTEGER,
    detail      TEXT,
    duration_ms INTEGER,
    created_at  INTEGER NOT NULL
);
CREATE INDEX webhook_logs_webhook ON webhook_logs(webhook_id, id DESC);

-- migration: 4
-- Agent groups: their API key is encrypted (AES-256-GCM, Secrets service), never returned.
CREATE TABLE agent_groups (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description            TEXT,
    system_prompt          TEXT,
    model                  TEXT,
    provider               TEXT NOT NULL DEFAULT 'anthropic'
                               CHECK (provider IN ('anthropic', 'openai-compatible')),
    base_url               TEXT,
    api_key                TEXT,
    api_key_hint           TEXT,
    skills                 TEXT,
    max_iterations         INTEGER,
    budget_max_tokens_day  INTEGER,
    budget_max_tokens_month INTEGER,
    container_isolation    INTEGER NOT NULL DEFAULT 0,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);

-- A channel belongs to at most one group.
CREATE TABLE group_channels (
    channel_id TEXT PRIMARY KEY,
    group_id   TEXT NOT NULL REFERENCES agent_groups(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);
CREATE INDEX group_channels_group ON group_channels(group_id);

ALTER TABLE api_calls ADD COLUMN group_id TEXT;
CREATE INDEX api_calls_group_created ON api_calls(group_id, created_at);
CREATE INDEX agent_runs_group_created ON agent_runs(group_id, created_at);

-- migration: 5
-- Loop tasks: an agent that runs again and again with its previous output in view.
CREATE TABLE loop_tasks (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    prompt            TEXT NOT NULL,
    group_id          TEXT,
    max_iterations    INTEGER NOT NULL,
    completion_signal TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN
                          ('pending', 'running', 'complete', 'stopped', 'error', 'interrupted')),
    stop_reason       TEXT,
    current_iteration INTEGER NOT NULL DEFAULT 0,
    output            TEXT NOT NULL DEFAULT '',
    error             TEXT,
    input_tokens      INTEGER NOT NULL DEFAULT 0,
    output_tokens     INTEGER NOT NULL DEFAULT 0,
    cost_micros       INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX loop_tasks_status ON loop_tasks(status);

CREATE TABLE loop_iterations (
    id            INTEGER PRIMARY KEY,
    task_id       TEXT NOT NULL REFERENCES loop_tasks(id) ON DELETE CASCADE,
    iteration     INTEGER NOT NULL,
    run_id        TEXT,
    output        TEXT NOT NULL,
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_micros   INTEGER NOT NULL,
    tool_calls    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (task_id, iteration)
);

-- migration: 6
-- Human approval of risky tool calls: rules per tool (absent: the defaults by risk), and one
-- row per request, decided once.
CREATE TABLE approval_rules (
    tool_name        TEXT PRIMARY KEY,
    risk_level       TEXT NOT NULL CHECK (risk_level IN ('low', 'medium', 'high', 'critical')),
    require_approval INTEGER NOT NULL,
    timeout_seconds  INTEGER NOT NULL,
    timeout_action   TEXT NOT NULL CHECK (timeout_action IN ('approve', 'reject')),
    auto_approve     TEXT,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    run_id      TEXT,
    tool_use_id TEXT NOT NULL,
    tool_name   TEXT NOT NULL,
    input       TEXT NOT NULL,
    risk_level  TEXT NOT NULL,
    reason      TEXT,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    decided_by  TEXT,
    decision_reason TEXT,
    timeout_action TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    decided_at  INTEGER
);
CREATE INDEX approvals_status_created ON approvals(status, created_at DESC);
CREATE INDEX approvals_run ON approvals(run_id);

-- migration: 7
-- Chat channels. Credentials live in `secrets`: a JSON object sealed with AES-256-GCM
-- (Secrets service, context `channels.secrets`), never returned. `state` is what a channel
-- resumes from (Telegram's update offset, an IMAP mailbox's UIDVALIDITY): JSON.
CREATE TABLE channels (
    id              TEXT PRIMARY KEY,
    type            TEXT NOT NULL CHECK (type IN ('telegram', 'email', 'whatsapp')),
    name            TEXT NOT NULL,
    config          TEXT NOT NULL,
    secrets         TEXT,
    allowed_senders TEXT NOT NULL DEFAULT '[]',
    enabled         INTEGER NOT NULL DEFAULT 1,
    state           TEXT,
    deleted_at      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- A deleted channel keeps its row (its messages refer to it) but frees its name.
CREATE UNIQUE INDEX channels_name ON channels(name) WHERE deleted_at IS NULL;

-- The inbox: every message a channel received, written before the platform is told it
-- arrived. (channel_id, external_id) deduplicates redeliveries. Status: `pending` (needs a
-- run), `replying` (the reply is stored and goes out next), `answered`, `ignored` (sender
-- not allowed, or not addressed to the bot), `failed` (the reply could not be delivered).
CREATE TABLE channel_messages (
    id              INTEGER PRIMARY KEY,
    channel_id      TEXT NOT NULL REFERENCES channels(id),
    external_id     TEXT NOT NULL,
    chat_key        TEXT NOT NULL,
    sender          TEXT NOT NULL,
    sender_name     TEXT,
    text            TEXT NOT NULL,
    meta            TEXT,
    conversation_id TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'replying', 'answered', 'ignored', 'failed')),
    ignored_reason  TEXT,
    run_id          TEXT,
    reply           TEXT,
    error           TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    received_at     INTEGER NOT NULL,
    answered_at     INTEGER,
    UNIQUE (channel_id, external_id)
);
CREATE INDEX channel_messages_open ON channel_messages(status, id)
    WHERE status IN ('pending', 'replying');
CREATE INDEX channel_messages_channel ON channel_messages(channel_id, id);

-- Which conversation a chat (Telegram chat, email thread, WhatsApp number) continues;
-- `/reset` points it at a new one.
CREATE TABLE channel_conversations (
    channel_id      TEXT NOT NULL,
    chat_key        TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (channel_id, chat_key)
);

-- migration: 8
-- Who may continue a conversation: `webhook:<id>` for one a webhook started (another webhook
-- naming its id is refused, so automations that pick the same id cannot read each other's
-- history); NULL for conversations of other sources and those from before this migration.
ALTER TABLE conversations ADD COLUMN owner TEXT;
