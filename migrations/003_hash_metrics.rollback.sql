DROP FUNCTION onex_maintain_hash_metrics_partitions(integer, integer, timestamptz);
-- Takes its partitions (the default one included) and its id sequence with it.
DROP TABLE hash_metrics;
