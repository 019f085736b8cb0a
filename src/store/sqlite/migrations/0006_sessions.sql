-- Dashboard sessions, kept in the store so that every replica knows them and a logout ends
-- them everywhere. The id is stored as its SHA-256 (a copy of the database opens no
-- session); `token_mac` ties the session to the admin token it was opened with.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    token_mac TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    idle_until INTEGER NOT NULL
) WITHOUT ROWID;
