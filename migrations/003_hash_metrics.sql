-- Hashing performance metrics, one row per operation. Monthly partitions let old months go with a DROP TABLE
-- instead of a slow DELETE; the DEFAULT partition catches rows for months that have no partition yet, so an
-- insert never fails because maintenance is late.
CREATE TABLE hash_metrics (
    id           bigserial,
    recorded_at  timestamptz      NOT NULL DEFAULT now(),
    operation    text             NOT NULL CHECK (operation <> ''),
    duration_ms  double precision NOT NULL CHECK (duration_ms >= 0),
    file_size    bigint           CHECK (file_size >= 0),
    namespace    text,
    thread_count integer          CHECK (thread_count >= 1),
    batch_id     uuid,
    batch_size   integer          CHECK (batch_size >= 1),
    success      boolean          NOT NULL DEFAULT true,
    error        text,
    -- A unique key on a partitioned table must contain the partition key.
    PRIMARY KEY (id, recorded_at)
) PARTITION BY RANGE (recorded_at);

CREATE INDEX hash_metrics_operation_recorded_at_idx ON hash_metrics (operation, recorded_at);
CREATE INDEX hash_metrics_namespace_recorded_at_idx ON hash_metrics (namespace, recorded_at);

CREATE TABLE hash_metrics_default PARTITION OF hash_metrics DEFAULT;

-- Creates the partitions of the month of as_of (UTC) and of the months_ahead months after it, and drops the
-- partitions that end on or before the start of the month keep_months months before it (rows of those months in
-- the default partition are deleted too). Returns one row per thing it did.
--
-- search_path is pinned to the schema the migration ran in, so that callers with another search_path still
-- maintain this table. A new partition is built beside the table, filled with the default partition's rows of its
-- month and then attached: creating it directly as a partition would fail while the default partition holds rows
-- of that month.
CREATE FUNCTION onex_maintain_hash_metrics_partitions(
    months_ahead integer,
    keep_months  integer,
    as_of        timestamptz DEFAULT now()
) RETURNS TABLE (action text, partition_name text, range_start timestamptz, range_end timestamptz, detail text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $fn$
DECLARE
    parent_schema text;
    this_month    timestamp;
    month_start   timestamp;
    part_name     text;
    cutoff        timestamptz;
    row_total     bigint;
    part          record;
BEGIN
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 120, got %', coalesce(months_ahead::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF keep_months IS NULL OR keep_months < 1 OR keep_months > 1200 THEN
        RAISE EXCEPTION 'keep_months must be between 1 and 1200, got %', coalesce(keep_months::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF as_of IS NULL THEN
        RAISE EXCEPTION 'as_of must not be NULL' USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Two maintainers at once would both try to create the same partitions; the second waits, then finds them.
    PERFORM pg_advisory_xact_lock(8029466753604088436);  -- the bytes of 'onexpart'

    SELECT n.nspname INTO parent_schema
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = 'hash_metrics'::regclass;

    -- Month boundaries are UTC midnights whatever the session's TimeZone, so partitions do not shift with it.
    this_month := date_trunc('month', as_of AT TIME ZONE 'UTC');

    FOR i IN 0..months_ahead LOOP
        month_start := this_month + make_interval(months => i);
        part_name := 'hash_metrics_p' || to_char(month_start, 'YYYYMM');
        CONTINUE WHEN to_regclass(format('%I.%I', parent_schema, part_name)) IS NOT NULL;

        range_start := month_start AT TIME ZONE 'UTC';
        range_end := (month_start + interval '1 month') AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.hash_metrics INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       parent_schema, part_name, parent_schema);
        EXECUTE format('WITH moved AS (DELETE FROM %I.hash_metrics_default WHERE recorded_at >= $1 AND recorded_at < $2 '
                       'RETURNING *) INSERT INTO %I.%I SELECT * FROM moved',
                       parent_schema, parent_schema, part_name)
            USING range_start, range_end;
        GET DIAGNOSTICS row_total = ROW_COUNT;
        -- ISO 8601 with an explicit offset reads the same under every DateStyle and TimeZone.
        EXECUTE format('ALTER TABLE %I.hash_metrics ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                       parent_schema, parent_schema, part_name,
                       to_char(month_start, 'YYYY-MM-DD') || ' 00:00:00+00',
                       to_char(month_start + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
        action := 'created';
        partition_name := part_name;
        detail := CASE WHEN row_total > 0
                       THEN format('moved %s rows from hash_metrics_default', row_total) END;
        RETURN NEXT;
    END LOOP;

    cutoff := (this_month - make_interval(months => keep_months)) AT TIME ZONE 'UTC';
    FOR part IN
        SELECT bounded.relname, bounded.bounds[1]::timestamptz AS lower_bound,
               bounded.bounds[2]::timestamptz AS upper_bound
        FROM (
            -- pg_get_expr writes the bounds as literals in this session's settings, so casting them back in the
            -- same session is exact; DEFAULT and MINVALUE/MAXVALUE bounds do not match and are never dropped.
            SELECT c.relname,
                   regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)')
                       AS bounds
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = format('%I.hash_metrics', parent_schema)::regclass
        ) AS bounded
        WHERE bounded.bounds IS NOT NULL AND bounded.bounds[2]::timestamptz <= cutoff
        ORDER BY 2
    LOOP
        EXECUTE format('DROP TABLE %I.%I', parent_schema, part.relname);
        action := 'dropped';
        partition_name := part.relname;
        range_start := part.lower_bound;
        range_end := part.upper_bound;
        detail := NULL;
        RETURN NEXT;
    END LOOP;

    EXECUTE format('DELETE FROM %I.hash_metrics_default WHERE recorded_at < $1', parent_schema) USING cutoff;
    GET DIAGNOSTICS row_total = ROW_COUNT;
    IF row_total > 0 THEN
        action := 'purged';
        partition_name := 'hash_metrics_default';
        range_start := NULL;
        range_end := cutoff;
        detail := format('deleted %s rows recorded before %s', row_total, cutoff);
        RETURN NEXT;
    END IF;
END
$fn$;

-- The current month and the next three, so that a database migrated without `onex migrate` is ready too.
SELECT count(*) FROM onex_maintain_hash_metrics_partitions(3, 12);
