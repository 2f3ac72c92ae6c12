"""Settings: defaults, environment variables, flags over environment, and errors naming what was allowed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from framework.cli.hostflags import add_host_flags, settings_from
from framework.errors import UsageError
from framework.runtime.config import ENV_VARS, Settings


def test_defaults() -> None:
    s = Settings.load({})
    assert (s.service_port, s.env, s.log_level, s.data_dir, s.bus) == (8053, "dev", "INFO", Path(".onex"), "kafka")
    assert s.postgres_dsn is None and s.kafka_bootstrap_servers is None


def test_environment_then_flags() -> None:
    env = {
        "SERVICE_PORT": "9000",
        "ONEX_ENV": "staging",
        "LOG_LEVEL": "debug",
        "ONEX_DATA_DIR": "/tmp/x",
        "POSTGRES_DSN": "postgresql://u@127.0.0.1:5/db",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "ONEX_BUS": "memory",
        "ONEX_DRAIN_TIMEOUT_S": "2.5",
        "ONEX_WORKFLOW_LEASE_S": "12",
        "ONEX_INSTANCE_ID": "stamping-0",
    }
    s = Settings.load(env)
    assert (s.workflow_lease_s, s.instance_id) == (12.0, "stamping-0")
    assert s.service_port == 9000 and s.env == "staging" and s.log_level == "DEBUG"
    assert s.data_dir == Path("/tmp/x") and s.bus == "memory" and s.drain_timeout_s == 2.5
    assert s.postgres_dsn == env["POSTGRES_DSN"] and s.kafka_bootstrap_servers == "127.0.0.1:9092"
    flagged = Settings.load(env, service_port="0", env="prod", bus=None)
    assert flagged.service_port == 0 and flagged.env == "prod" and flagged.bus == "memory"


def test_every_env_var_names_a_setting() -> None:
    fields = set(Settings.__dataclass_fields__)
    assert set(ENV_VARS.values()) <= fields


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVICE_PORT": "http"}, "SERVICE_PORT='http': expected a port number from 0 to 65535"),
        ({"SERVICE_PORT": "70000"}, "SERVICE_PORT='70000': expected a port number"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud': expected one of DEBUG, INFO, WARNING, ERROR"),
        ({"ONEX_ENV": "Prod-1"}, "ONEX_ENV='Prod-1': expected a lowercase name"),
        ({"ONEX_BUS": "redis"}, "ONEX_BUS='redis': expected one of kafka, memory"),
        ({"ONEX_DRAIN_TIMEOUT_S": "-1"}, "ONEX_DRAIN_TIMEOUT_S='-1': expected a positive number of seconds"),
        ({"ONEX_WORKFLOW_LEASE_S": "soon"}, "ONEX_WORKFLOW_LEASE_S='soon': expected a positive number of seconds"),
        ({"ONEX_INSTANCE_ID": "pod 0"}, "ONEX_INSTANCE_ID='pod 0': expected 1-64 characters of [A-Za-z0-9._-]"),
    ],
)
def test_bad_values_name_variable_and_allowed(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        Settings.load(env)
    assert message in str(info.value)


def test_bad_flag_names_the_flag() -> None:
    with pytest.raises(UsageError, match=r"--port='x'"):
        Settings.load({}, service_port="x")


# --- the database pool and partition maintenance ------------------------------------------------------------------


def test_pool_and_partition_maintenance_defaults() -> None:
    s = Settings.load({})
    assert (s.db_pool_min, s.db_pool_max, s.partition_maintenance_s) == (10, 50, 21600.0)


def test_pool_and_partition_maintenance_from_environment_then_flags() -> None:
    env = {"ONEX_DB_POOL_MIN": "2", "ONEX_DB_POOL_MAX": " 8 ", "ONEX_PARTITION_MAINTENANCE_S": "0"}
    s = Settings.load(env)
    assert (s.db_pool_min, s.db_pool_max, s.partition_maintenance_s) == (2, 8, 0.0)
    flagged = Settings.load(env, db_pool_min="4", db_pool_max=None)
    assert (flagged.db_pool_min, flagged.db_pool_max) == (4, 8)
    assert Settings.load({"ONEX_PARTITION_MAINTENANCE_S": "3600"}).partition_maintenance_s == 3600.0


def test_the_host_flags_set_the_pool() -> None:
    parser = argparse.ArgumentParser()
    add_host_flags(parser)
    s = settings_from(parser.parse_args(["--db-pool-min", "3", "--db-pool-max", "6"]))
    assert (s.db_pool_min, s.db_pool_max) == (3, 6)
    with pytest.raises(UsageError, match=r"--db-pool-max=2 is below --db-pool-min=3"):
        settings_from(parser.parse_args(["--db-pool-min", "3", "--db-pool-max", "2"]))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ONEX_DB_POOL_MIN": "0"}, "ONEX_DB_POOL_MIN='0': expected a whole number of connections >= 1"),
        ({"ONEX_DB_POOL_MIN": "-3"}, "ONEX_DB_POOL_MIN='-3': expected a whole number of connections >= 1"),
        ({"ONEX_DB_POOL_MAX": "many"}, "ONEX_DB_POOL_MAX='many': expected a whole number of connections >= 1"),
        ({"ONEX_DB_POOL_MAX": "2.5"}, "ONEX_DB_POOL_MAX='2.5': expected a whole number of connections >= 1"),
        (
            {"ONEX_DB_POOL_MIN": "20", "ONEX_DB_POOL_MAX": "10"},
            "ONEX_DB_POOL_MAX=10 is below ONEX_DB_POOL_MIN=20: the pool's maximum must be at least its minimum",
        ),
        ({"ONEX_DB_POOL_MAX": "5"}, "ONEX_DB_POOL_MAX=5 is below ONEX_DB_POOL_MIN=10 (the default)"),
        ({"ONEX_DB_POOL_MIN": "60"}, "ONEX_DB_POOL_MAX=50 (the default) is below ONEX_DB_POOL_MIN=60"),
        (
            {"ONEX_PARTITION_MAINTENANCE_S": "-1"},
            "ONEX_PARTITION_MAINTENANCE_S='-1': expected a number of seconds >= 0 "
            "(0 turns the partition maintenance off)",
        ),
        ({"ONEX_PARTITION_MAINTENANCE_S": "often"}, "ONEX_PARTITION_MAINTENANCE_S='often': expected a number"),
        ({"ONEX_PARTITION_MAINTENANCE_S": "nan"}, "ONEX_PARTITION_MAINTENANCE_S='nan': expected a number"),
    ],
)
def test_bad_pool_and_maintenance_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        Settings.load(env)
    assert message in str(info.value)


def test_settings_built_in_code_are_checked_too() -> None:
    with pytest.raises(UsageError, match="db_pool_min must be an integer >= 1, got 0"):
        Settings(db_pool_min=0)
    with pytest.raises(UsageError, match=r"db_pool_max must be an integer >= db_pool_min \(10\), got 5"):
        Settings(db_pool_max=5)
    with pytest.raises(UsageError, match="partition_maintenance_s must be >= 0 seconds"):
        Settings(partition_maintenance_s=-1.0)
    with pytest.raises(UsageError, match=r"event_log_retention_s must be from 0 to 3155760000 seconds \(0 keeps"):
        Settings(event_log_retention_s=-1.0)
    with pytest.raises(UsageError, match="event_log_retention_s must be from 0 to 3155760000 seconds"):
        Settings(event_log_retention_s=float("nan"))
    assert Settings(db_pool_min=1, db_pool_max=1).db_pool_max == 1


# --- the event log retention --------------------------------------------------------------------------------------


def test_event_log_retention_defaults_to_7_days() -> None:
    assert Settings.load({}).event_log_retention_s == 604800.0
    assert Settings().event_log_retention_s == 7 * 24 * 3600.0


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0.0), (" 3600 ", 3600.0), ("90.5", 90.5), ("3155760000", 3155760000.0)]
)
def test_event_log_retention_from_the_environment(value: str, seconds: float) -> None:
    assert Settings.load({"ONEX_EVENT_LOG_RETENTION_S": value}).event_log_retention_s == seconds


@pytest.mark.parametrize("value", ["-1", "a week", "nan", "inf", "-inf", "3155760001"])
def test_bad_event_log_retention_names_the_variable_and_the_range(value: str) -> None:
    with pytest.raises(UsageError) as info:
        Settings.load({"ONEX_EVENT_LOG_RETENTION_S": value})
    assert str(info.value).startswith(
        f"ONEX_EVENT_LOG_RETENTION_S={value!r}: expected a number of seconds from 0 to 3155760000 "
        "(100 years; 0 keeps every event log row)"
    )


def test_event_log_retention_has_no_flag_like_the_partition_maintenance() -> None:
    parser = argparse.ArgumentParser()
    add_host_flags(parser)
    for option in ("--event-log-retention-s", "--partition-maintenance-s"):
        assert option not in parser._option_string_actions
