-- What each connector instance made at its target for a conversation (ticket id, contact id),
-- by output name, so a later version updates those objects instead of creating new ones.
CREATE TABLE ledger (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    connector       TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, connector, name)
) WITHOUT ROWID;
