"""Destination types: the union's default, and a missing optional dependency as a config error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from logbridge.collector.config import CollectorServerConfig
from logbridge.collector.core import Collector
from logbridge.config import validate
from logbridge.errors import ConfigError, MissingExtra
from logbridge.sinks.base import Publisher, Sink
from logbridge.sinks.config import FilesystemDestination, NatsDestination


def config(tmp_path: Path, *destinations: dict[str, object]) -> CollectorServerConfig:
    data = {
        "state_dir": str(tmp_path / "state"),
        "dead_letter": f"file://{tmp_path / 'dead'}",
        "destinations": list(destinations),
    }
    return validate(data, CollectorServerConfig)


def test_a_destination_without_type_is_a_filesystem_one(tmp_path: Path) -> None:
    c = config(
        tmp_path, {"name": "a", "url": "file:///x"}, {"name": "b", "type": "filesystem", "url": "file:///y"}
    )
    assert [type(d) for d in c.destinations] == [FilesystemDestination, FilesystemDestination]


def test_nats_destinations_have_their_own_keys(tmp_path: Path) -> None:
    (dest,) = config(
        tmp_path, {"name": "bus", "type": "nats", "servers": ["nats://127.0.0.1:4222"]}
    ).destinations
    assert isinstance(dest, NatsDestination) and dest.subject == "audit.{topic}.{routing_key}"
    with pytest.raises(ConfigError, match=r"destinations\[0\]\.url: unknown key"):
        config(tmp_path, {"name": "bus", "type": "nats", "servers": ["nats://x"], "url": "file:///x"})


def test_an_unknown_type_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"destinations\[0\]: type: expected one of filesystem, nats"):
        config(tmp_path, {"name": "a", "type": "kafka", "url": "file:///x"})


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        ("s3://bucket/audit", "s3fs", "s3"),
        ("az://container/audit", "adlfs", "azure"),
        ("gs://b/audit", "gcsfs", "gcs"),
    ],
)
def test_a_missing_filesystem_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # not installed, whatever this machine has
    with pytest.raises(MissingExtra) as info:
        Collector(config(tmp_path, {"name": "store", "url": url}))
    assert info.value.extra == extra
    assert f"pip install 'logbridge[{extra}]'" in str(info.value)
    assert "destinations[0] (store)" in str(info.value)


def test_a_missing_nats_client_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)
    with pytest.raises(MissingExtra, match=r"pip install 'logbridge\[nats\]'"):
        Collector(config(tmp_path, {"name": "bus", "type": "nats", "servers": ["nats://127.0.0.1:4222"]}))


def test_a_nats_destination_is_a_publisher_with_no_staging(tmp_path: Path) -> None:
    """Built without connecting (that happens when the service starts); it stages nothing, so
    the collector keeps it out of the staging sinks it rolls, syncs and recovers."""
    pytest.importorskip("nats")
    collector = Collector(
        config(
            tmp_path,
            {"name": "bus", "type": "nats", "servers": ["nats://127.0.0.1:4222"]},
            {"name": "store", "url": f"file://{tmp_path / 'store'}"},
        )
    )
    (bus,) = collector.publishers
    assert isinstance(bus, Publisher) and not isinstance(bus, Sink)
    assert [r.publishes for r in collector.routes] == [True, False]
    assert [s.name for s in collector.sinks] == ["store", "_dead-letter"]
    assert not (tmp_path / "state" / "staging" / "bus").exists()


# Runs ``logbridge`` with one package made unimportable, as on a machine without it (this one
# has every extra installed: the tests of the stores need them).
WITHOUT = (
    "import runpy, sys; sys.modules[{module!r}] = None; runpy.run_module('logbridge', run_name='__main__')"
)


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [("az://audit/store", "adlfs", "azure"), ("gs://audit/store", "gcsfs", "gcs")],
)
def test_collect_with_a_missing_extra_is_one_message_and_exit_2(
    tmp_path: Path, url: str, module: str, extra: str
) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": 0},
                "state_dir": str(tmp_path / "state"),
                "dead_letter": f"file://{tmp_path / 'dead'}",
                "destinations": [{"name": "blob", "type": "filesystem", "url": url}],
            }
        )
    )
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT.format(module=module), "collect", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and f"pip install 'logbridge[{extra}]'" in proc.stderr
    assert "destinations[0]" in proc.stderr
    assert not (tmp_path / "state" / "staging").exists(), "the collector started before the check"
