-- Event tracing: one row per event a node consumed (direction 'in') or published ('out').
CREATE TABLE event_logs (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id       uuid        NOT NULL,
    topic          text        NOT NULL,
    event_type     text        NOT NULL,
    correlation_id uuid,
    direction      text        NOT NULL CHECK (direction IN ('in', 'out')),
    status         text        NOT NULL CHECK (status <> ''),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    duration_ms    double precision CHECK (duration_ms >= 0),
    error          text,
    CHECK (finished_at IS NULL OR finished_at >= started_at)
);

-- Following one event, and a whole chain of events, through the system.
CREATE INDEX event_logs_event_id_idx ON event_logs (event_id);
CREATE INDEX event_logs_correlation_id_idx ON event_logs (correlation_id) WHERE correlation_id IS NOT NULL;
CREATE INDEX event_logs_topic_started_at_idx ON event_logs (topic, started_at);
