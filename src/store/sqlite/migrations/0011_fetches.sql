-- Events whose conversation is read from the product's REST API, kept before the product is
-- answered and removed once the fetched conversation is stored. One row per event: a
-- re-delivery (same source, same bytes) is the row already kept.
CREATE TABLE fetches (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event           TEXT NOT NULL,
    body            BLOB NOT NULL,
    body_sha256     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    received_at     INTEGER NOT NULL,
    UNIQUE (source, body_sha256)
);
-- A lease reads each source's due range.
CREATE INDEX fetches_due ON fetches (source, next_at) WHERE state = 'pending';
