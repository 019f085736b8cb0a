-- Versions are kept packed (`store::Packed`): the body and its normalized form in one zstd
-- frame, which holds their common text once, when that is smaller. Rows stored before stay
-- as they were, codec 0.
ALTER TABLE conversation_versions RENAME COLUMN raw TO body;
ALTER TABLE conversation_versions ADD COLUMN codec INTEGER NOT NULL DEFAULT 0;
