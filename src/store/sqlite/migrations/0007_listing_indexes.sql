-- A conversation's deliveries by state: the listing's per-row counts, the delivery-state
-- filter, and the cascade when a conversation is purged or forgotten read them here instead
-- of scanning every delivery.
CREATE INDEX deliveries_conversation ON deliveries (conversation_id, state);
-- The search by visitor e-mail compares without regard to case and lists newest first: the
-- index is in that collation and that order, so a search reads only its own rows.
DROP INDEX conversations_email;
CREATE INDEX conversations_email ON conversations (visitor_email COLLATE NOCASE, created_at, id);
