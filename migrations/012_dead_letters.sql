-- A copy of every message sent to a dead-letter topic, with why it failed, so it can be inspected and replayed
-- without reading the topic from the start.
CREATE TABLE dead_letters (
    id             bigserial   PRIMARY KEY,
    topic          text        NOT NULL,
    original_topic text        NOT NULL,
    event_id       uuid,
    key            bytea,
    value          bytea       NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    error          text        NOT NULL,
    attempts       integer     NOT NULL CHECK (attempts >= 0),
    consumer_group text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dead_letters_original_topic_created_at_idx ON dead_letters (original_topic, created_at);
CREATE INDEX dead_letters_event_id_idx ON dead_letters (event_id) WHERE event_id IS NOT NULL;
