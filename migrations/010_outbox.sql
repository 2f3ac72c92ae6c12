-- The transactional outbox: events written in the same transaction as the data they describe, published later
-- by the relay in id order, so a broker outage loses nothing.
CREATE TABLE outbox (
    id         bigserial   PRIMARY KEY,
    topic      text        NOT NULL,
    key        bytea,
    value      bytea       NOT NULL,
    -- A list of [name, value] pairs rather than an object: Kafka headers may repeat a name.
    headers    jsonb       NOT NULL DEFAULT '[]'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    attempts   integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error text
);

-- The relay's only query reads unsent rows in id order; sent rows stay out of the index.
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
