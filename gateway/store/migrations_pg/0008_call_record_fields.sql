-- Version 8: the call log keeps every field of the tracker's record (``centralita replay``
-- prints the same ones): who answered, in order, why a reconstructed record is one, and how
-- long a queue caller waited.
ALTER TABLE calls ADD COLUMN agents_answered TEXT NOT NULL DEFAULT '[]';
ALTER TABLE calls ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';
ALTER TABLE calls ADD COLUMN queue_wait_seconds DOUBLE PRECISION;
