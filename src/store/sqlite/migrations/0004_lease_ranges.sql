-- A lease reads each connector's due deliveries from its own index range, oldest first, and
-- stops at what it takes; the next wake-up reads the earliest lease to run out. Neither
-- grows with the queue.
CREATE INDEX deliveries_due_by_connector ON deliveries (connector, next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'pending' AND lease_until IS NOT NULL;
