-- The event ids each consumer group has handled, written in the same transaction as the handler's effects so
-- that a redelivered event is recognised and skipped.
CREATE TABLE processed_events (
    consumer_group text        NOT NULL,
    event_id       uuid        NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);

-- Pruning ids older than any redelivery can be.
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);
