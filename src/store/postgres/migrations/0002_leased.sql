-- The next wake-up reads the earliest lease to run out (another replica's, perhaps dead)
-- from this index instead of scanning the queue.
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'pending' AND lease_until IS NOT NULL;
