"""Settings: defaults, environment variables, flags over environment, and errors naming what was allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    with pytest.raises(UsageError, match=r"--service-port='x'"):
        Settings.load({}, service_port="x")
