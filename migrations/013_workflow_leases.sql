-- Who runs an unfinished workflow, and until when: the owner (an orchestrator instance) renews its lease while it
-- lives; another orchestrator resumes the workflow only once the lease has expired.
ALTER TABLE workflow_executions
    ADD COLUMN owner            text CHECK (owner <> ''),
    ADD COLUMN lease_expires_at timestamptz;

-- Claiming the unfinished workflows of a name after a restart, and renewing an owner's leases.
CREATE INDEX workflow_executions_owner_idx ON workflow_executions (owner) WHERE completed_at IS NULL;
