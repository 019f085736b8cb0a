-- Every e-mail address a stored body or an attempt's answer mentions, in lower case
-- (`privacy::addresses`), so that erasing a visitor reads their rows through this index
-- instead of every body in the store. `attempt_id` 0 stands for the conversation's own
-- bodies; another is an attempt of one of its deliveries whose excerpt or error mentions an
-- address the bodies do not. Rows go with their conversation. Filled for the rows already
-- stored by the migration itself (see `sqlite.rs`).
CREATE TABLE mentions (
    address         TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    attempt_id      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (address, conversation_id, attempt_id)
) WITHOUT ROWID;
CREATE INDEX mentions_conversation ON mentions (conversation_id);
-- Delivered deliveries by connector and time: the overview's "delivered in the last day" is a
-- range of it, as the dead ones are of `deliveries_dead` and the pending ones of
-- `deliveries_due_by_connector`.
CREATE INDEX deliveries_delivered ON deliveries (connector, updated_at) WHERE state = 'delivered';
-- Versions by arrival: the chats received in the last day.
CREATE INDEX conversation_versions_received ON conversation_versions (received_at);
-- What the connectors made, by the id its target gave it: the search by ticket or contact
-- number.
CREATE INDEX ledger_value ON ledger (value);
