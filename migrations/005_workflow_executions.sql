-- One row per orchestrated workflow: its FSM state and the context its steps share.
CREATE TABLE workflow_executions (
    workflow_id   uuid        PRIMARY KEY,
    workflow_name text        NOT NULL CHECK (workflow_name <> ''),
    state         text        NOT NULL CHECK (state <> ''),
    context       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    error         text
);

-- Finding the workflows still in flight after a restart, oldest first.
CREATE INDEX workflow_executions_unfinished_idx ON workflow_executions (updated_at) WHERE completed_at IS NULL;
CREATE INDEX workflow_executions_name_started_at_idx ON workflow_executions (workflow_name, started_at);
