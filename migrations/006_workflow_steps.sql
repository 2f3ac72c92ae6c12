-- One row per step of a workflow, updated as the step is retried and finishes.
CREATE TABLE workflow_steps (
    workflow_id uuid        NOT NULL REFERENCES workflow_executions (workflow_id) ON DELETE CASCADE,
    step        text        NOT NULL CHECK (step <> ''),
    -- The outcomes of the workflow-step-completed event, plus the two states before an outcome.
    status      text        NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'running', 'completed', 'skipped', 'failed', 'timed_out')),
    attempts    integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    started_at  timestamptz,
    finished_at timestamptz,
    duration_ms double precision CHECK (duration_ms >= 0),
    error       text,
    result      jsonb,
    PRIMARY KEY (workflow_id, step)
);
