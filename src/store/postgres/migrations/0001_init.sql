-- The same tables as the SQLite store, in PostgreSQL's types. Times are Unix milliseconds
-- (BIGINT), as in SQLite, so both stores read and write them the same way.

CREATE TABLE conversations (
    id             TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    account_id     TEXT NOT NULL,
    status         TEXT NOT NULL,
    visitor_email  TEXT,
    started_at     BIGINT,
    ended_at       BIGINT,
    latest_version BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
-- E-mail search is case-insensitive, as SQLite's COLLATE NOCASE.
CREATE INDEX conversations_email ON conversations (lower(visitor_email));
-- Newest first listings and the retention purge's scan order.
CREATE INDEX conversations_received ON conversations (created_at, id);

CREATE TABLE conversation_versions (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    version         BIGINT NOT NULL,
    body_sha256     TEXT NOT NULL,
    raw             BYTEA NOT NULL,
    normalized      TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, version)
);
CREATE INDEX conversation_versions_received ON conversation_versions (received_at);

CREATE TABLE deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    version          BIGINT NOT NULL,
    connector        TEXT NOT NULL,
    key              TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    first_attempt_at BIGINT,
    last_error       TEXT,
    remote           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
-- The lease walks these in due order and stops after the rows it takes: each lease costs
-- what it takes, not what is queued.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_due_by_connector ON deliveries (connector, next_attempt_at, id) WHERE state = 'pending';
CREATE INDEX deliveries_pair ON deliveries (conversation_id, connector) WHERE state = 'pending';
CREATE INDEX deliveries_dead ON deliveries (connector) WHERE state = 'dead';
CREATE INDEX deliveries_conversation ON deliveries (conversation_id);

CREATE TABLE delivery_steps (
    delivery_id  BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    step         TEXT NOT NULL,
    outputs      TEXT NOT NULL,
    completed_at BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, step)
);

CREATE TABLE attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    started_at  BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER,
    step        TEXT,
    error       TEXT,
    excerpt     TEXT
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);

CREATE TABLE quarantine (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       TEXT NOT NULL,
    reason       TEXT NOT NULL,
    body         BYTEA NOT NULL,
    content_type TEXT,
    received_at  BIGINT NOT NULL
);

CREATE TABLE ledger (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    connector       TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           TEXT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, connector, name)
);
