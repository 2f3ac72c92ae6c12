DROP INDEX workflow_executions_owner_idx;
ALTER TABLE workflow_executions DROP COLUMN lease_expires_at, DROP COLUMN owner;
