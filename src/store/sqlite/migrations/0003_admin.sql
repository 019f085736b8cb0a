-- Conversations listed newest first and searched by time, by the admin API and dashboard;
-- also the retention purge's scan order.
CREATE INDEX conversations_received ON conversations (created_at, id);
