-- The search by visitor e-mail lists newest first: with the listing's order in the index, a
-- search reads only its own rows, in order.
DROP INDEX conversations_email;
CREATE INDEX conversations_email ON conversations (lower(visitor_email), created_at, id);
