"""The flags that ``onex run`` and ``onex up`` share, through the real parser: each reaches its setting, over the
environment variable it matches, and a bad value is reported under the flag the user typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from framework.cli.hostflags import settings_from
from framework.cli.main import build_parser, main

CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "metadata_stamping.yaml"


@pytest.mark.parametrize("command", [["run", str(CONTRACT)], ["up"]])
def test_every_host_flag_reaches_its_setting_over_the_environment(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICE_PORT", "7000")
    monkeypatch.setenv("ONEX_ENV", "dev")
    flags = [
        "--port=9001",
        "--env=staging",
        "--log-level=debug",
        "--data-dir=/tmp/onex-flags",
        "--postgres-dsn=postgresql://u@127.0.0.1:5433/db",
        "--kafka-bootstrap-servers=127.0.0.1:9093",
        "--bus=memory",
        "--event-log=off",
        "--db-pool-min=2",
        "--db-pool-max=4",
    ]
    settings = settings_from(build_parser().parse_args([*command, *flags]))
    assert settings.service_port == 9001 and settings.env == "staging" and settings.log_level == "DEBUG"
    assert settings.data_dir == Path("/tmp/onex-flags") and settings.bus == "memory" and settings.event_log is False
    assert settings.postgres_dsn == "postgresql://u@127.0.0.1:5433/db"
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9093"
    assert (settings.db_pool_min, settings.db_pool_max) == (2, 4)


def test_a_bad_flag_value_is_reported_under_the_flag_given(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(CONTRACT), "--port", "x"]) == 2
    assert "--port='x': expected a port number from 0 to 65535" in capsys.readouterr().err
    assert main(["run", str(CONTRACT), "--env", "Bad-Env"]) == 2
    assert "--env='Bad-Env': expected a lowercase name" in capsys.readouterr().err
