-- Events whose conversation is read from the product's REST API, as in the SQLite store.
CREATE TABLE fetches (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            BYTEA NOT NULL,
    body_sha256     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         BIGINT NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,
    received_at     BIGINT NOT NULL,
    UNIQUE (source, body_sha256)
);
CREATE INDEX fetches_due ON fetches (source, next_at) WHERE state = 'pending';
