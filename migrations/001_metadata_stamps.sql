-- Metadata stamps: one row per (namespace, content hash), written by the metadata stamping node.
CREATE TABLE metadata_stamps (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    -- BLAKE3-256 in lowercase hex; the check keeps differently cased copies of one hash from becoming two stamps.
    file_hash         text        NOT NULL CHECK (file_hash ~ '^[0-9a-f]{64}$'),
    namespace         text        NOT NULL CHECK (namespace <> ''),
    file_path         text,
    file_size         bigint      NOT NULL CHECK (file_size >= 0),
    content_type      text,
    stamp_data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    protocol_version  text        NOT NULL DEFAULT '1.0',
    intelligence_data jsonb       NOT NULL DEFAULT '{}'::jsonb,
    op_id             uuid        NOT NULL,
    version           integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    metadata_version  text        NOT NULL DEFAULT '0.1',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT metadata_stamps_namespace_file_hash_key UNIQUE (namespace, file_hash)
);

-- jsonb_ops rather than jsonb_path_ops: intelligence queries test for keys (?, ?|) as well as containment (@>).
CREATE INDEX metadata_stamps_stamp_data_gin ON metadata_stamps USING gin (stamp_data);
CREATE INDEX metadata_stamps_intelligence_data_gin ON metadata_stamps USING gin (intelligence_data);
-- Listing a namespace newest first (keyset pagination on created_at, id).
CREATE INDEX metadata_stamps_namespace_created_at_idx ON metadata_stamps (namespace, created_at DESC, id);
