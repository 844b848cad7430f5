-- +goose Up
-- fence is a background job's fencing token (issue #18.3): it grows by
-- one each time the job's lease changes hands (another node takes it, or
-- a holder takes it again after it ran out or was released) and stays
-- while the holder renews it in time. Every write a job makes checks, in
-- its own transaction, that the lease is still held under the token it
-- was given, so a stale holder (paused past its lease while another node
-- took over) has its writes refused instead of interleaved.
--
-- A column with a constant default rewrites no row; nodes of the previous
-- schema version never read it and run unchanged against it.
ALTER TABLE jobs ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;

-- +goose Down
SELECT 'down migrations are not supported: restore a backup instead';
