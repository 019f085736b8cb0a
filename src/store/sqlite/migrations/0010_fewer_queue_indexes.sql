-- Every index on `deliveries` is written at each insert and, the state being in their
-- predicates, at each attempt recorded. A pair's pending deliveries (the older-sibling check,
-- a newer version brought up) are the `(conversation_id, state)` range of
-- `deliveries_conversation`, a handful of rows: `deliveries_pair` served nothing more.
DROP INDEX deliveries_pair;
