-- Leases and wake-ups read `deliveries_due_by_connector` since migration 4, so no query
-- reads `deliveries_due` any more; it was still written on every delivery's insert, lease
-- and finish.
DROP INDEX deliveries_due;
