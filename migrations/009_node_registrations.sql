-- The node registry: what each node said about itself in its introspection event, and its last heartbeat.
CREATE TABLE node_registrations (
    node_id        text        PRIMARY KEY CHECK (node_id <> ''),
    node_type      text        NOT NULL CHECK (node_type IN ('EFFECT', 'COMPUTE', 'REDUCER', 'ORCHESTRATOR', 'REGISTRY')),
    node_version   text        NOT NULL,
    capabilities   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    endpoints      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    contract_hash  text,
    -- 'unknown' until the first heartbeat; the others are the heartbeat event's values.
    health_status  text        NOT NULL DEFAULT 'unknown'
                               CHECK (health_status IN ('unknown', 'healthy', 'degraded', 'unhealthy')),
    last_heartbeat timestamptz,
    ttl_s          integer     NOT NULL DEFAULT 90 CHECK (ttl_s > 0),
    registered_at  timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Discovery: by type, and by capability (capabilities @> '{"stamping": true}').
CREATE INDEX node_registrations_node_type_idx ON node_registrations (node_type);
CREATE INDEX node_registrations_capabilities_gin ON node_registrations USING gin (capabilities);
