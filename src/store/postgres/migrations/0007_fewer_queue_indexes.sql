-- Every index on `deliveries` is written at each insert and, the state and lease being in
-- their predicates, at each lease and each attempt recorded. Two served nothing the others
-- do not: leases read `deliveries_due_by_connector`, and a pair's pending deliveries (the
-- older-sibling check, a newer version brought up) are the `(conversation_id, state)` range
-- of `deliveries_conversation`, a handful of rows.
DROP INDEX deliveries_due;
DROP INDEX deliveries_pair;
