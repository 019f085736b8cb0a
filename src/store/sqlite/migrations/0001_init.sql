-- Conversations: one row per conversation id, pointing at its latest version. Small rows keyed
-- by a text id: WITHOUT ROWID keeps them in one b-tree instead of a table plus a key index.
CREATE TABLE conversations (
    id             TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    status         TEXT NOT NULL,
    visitor_email  TEXT,
    started_at     INTEGER,
    ended_at       INTEGER,
    latest_version INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX conversations_email ON conversations (visitor_email);

-- Every distinct body received for a conversation, byte for byte, with its normalized form.
-- Duplicates are found through the primary key's conversation_id prefix (a conversation has
-- a handful of versions), so no second index is maintained on every insert.
CREATE TABLE conversation_versions (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    version         INTEGER NOT NULL,
    body_sha256     TEXT NOT NULL,
    raw             BLOB NOT NULL,
    normalized      TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, version)
);

-- One row per (conversation version, connector instance) to deliver. Times are Unix ms.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    version          INTEGER NOT NULL,
    connector        TEXT NOT NULL,
    key              TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    first_attempt_at INTEGER,
    last_error       TEXT,
    remote           TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_pair ON deliveries (conversation_id, connector) WHERE state = 'pending';
CREATE INDEX deliveries_dead ON deliveries (connector) WHERE state = 'dead';

-- Steps a delivery has completed, so a retry resumes after them.
CREATE TABLE delivery_steps (
    delivery_id  INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    step         TEXT NOT NULL,
    outputs      TEXT NOT NULL,
    completed_at INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, step)
);

-- Every attempt, with the target's answer.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER,
    step        TEXT,
    error       TEXT,
    excerpt     TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

-- Bodies that could not be parsed, kept for inspection and replay.
CREATE TABLE quarantine (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    body         BLOB NOT NULL,
    content_type TEXT,
    received_at  INTEGER NOT NULL
);
