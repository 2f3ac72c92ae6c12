-- The reducer's aggregated state, one row per (namespace, aggregation, group) as in subcontracts/state.
CREATE TABLE bridge_states (
    namespace        text        NOT NULL,
    aggregation_type text        NOT NULL,
    group_key        text        NOT NULL,
    total_items      bigint      NOT NULL DEFAULT 0 CHECK (total_items >= 0),
    total_size_bytes bigint      NOT NULL DEFAULT 0 CHECK (total_size_bytes >= 0),
    state            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    window_start     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, aggregation_type, group_key)
);
