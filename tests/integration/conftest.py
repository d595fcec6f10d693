"""Fixtures that start real servers: the collector and the shipper as subprocesses (the process
harnesses are collectorproc.py and shipperproc.py), moto's S3 server, the Azure and GCS emulators; and ``audit_logger``,
which attaches an EventServerHandler to the ``dku.audit`` loggers for a test.

Everything listens on loopback on a free port and is stopped in teardown; nothing here mocks
the parts under test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _polling import wait_for
from _storefiles import is_manifest, read_data_file

from logbridge.collector.local import free_port

from .collectorproc import Collector, collector_config
from .shipperproc import ShipperProc, shipper_config


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    """``wait_for(condition, timeout, what)``: poll until truthy, fail naming ``what`` on timeout."""
    return wait_for


# ------------------------------------------------------------------------------------- collector


@pytest.fixture
def collector(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Collector]]:
    """``collector(**config_overrides)`` → a started `Collector`; every one is stopped in teardown."""
    started: list[Collector] = []
    # Servers the collectors write to (moto) stop these first, whatever the fixture order.
    request.node.stash[RUNNING_COLLECTORS] = started

    def start(*, env: dict[str, str] | None = None, **overrides: Any) -> Collector:
        home = tmp_path / f"collector-{len(started)}"
        home.mkdir()
        proc_env = dict(os.environ)
        proc_env.update(env or {})
        c = Collector(home, collector_config(home, free_port(), **overrides), proc_env)
        started.append(c)
        c.start()
        return c

    yield start
    stop_all(started)


RUNNING_COLLECTORS = pytest.StashKey[list[Collector]]()


def stop_all(collectors: list[Collector]) -> None:
    for c in collectors:
        if c.process is not None and c.process.poll() is None:
            c.stop()


# --------------------------------------------------------------------------------------- shipper


@pytest.fixture(name="shipper")
def shipper_fixture(tmp_path: Path) -> Iterator[Callable[..., ShipperProc]]:
    """``shipper(url, inputs, **overrides)`` → a `ShipperProc` (not started); stopped in teardown."""
    made: list[ShipperProc] = []

    def make(url: str, inputs: list[dict[str, Any]], **overrides: Any) -> ShipperProc:
        home = tmp_path / f"shipper-{len(made)}"
        home.mkdir()
        proc = ShipperProc(home, shipper_config(home, url, inputs, **overrides))
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.process is not None and proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait(timeout=10)


# ----------------------------------------------------------------------------------- handler


@pytest.fixture
def audit_logger() -> Iterator[Callable[[logging.Handler], None]]:
    """``attach(handler)``: the handler receives ``dku.audit.*``; detached and closed after."""
    parent = logging.getLogger("dku.audit")
    attached: list[logging.Handler] = []
    saved = (parent.level, parent.propagate)
    parent.setLevel(logging.INFO)
    parent.propagate = False

    def attach(handler: logging.Handler) -> None:
        parent.addHandler(handler)
        attached.append(handler)

    yield attach
    for handler in attached:
        parent.removeHandler(handler)
        handler.close()
    parent.setLevel(saved[0])
    parent.propagate = saved[1]


# ----------------------------------------------------------------------------------------- store


def _read_local_store(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Relative path → stored lines, for every published data file under ``root``.

    Anything in the store that is neither a data file nor a manifest (a leftover temp file, a
    half-written upload) fails the test: the store must hold only complete files.
    """
    files: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or is_manifest(path.name):
            continue
        rel = path.relative_to(root).as_posix()
        assert path.name.endswith((".ndjson", ".ndjson.gz", ".ndjson.zst")), f"stray file in the store: {rel}"
        files[rel] = read_data_file(path.name, path.read_bytes())
    return files


@pytest.fixture(name="read_local_store")
def read_local_store_fixture() -> Callable[[Path], dict[str, list[dict[str, Any]]]]:
    """``read_local_store(root)`` → relative path → stored lines of every published file."""
    return _read_local_store


# -------------------------------------------------------------------------------------------- S3


@pytest.fixture
def s3_server(s3_server: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The shared moto server (tests/conftest.py), stopping this test's collectors before it:
    a collector still running would spend its shutdown retrying uploads to a dead server."""
    try:
        yield s3_server
    finally:
        stop_all(request.node.stash.get(RUNNING_COLLECTORS, []))


# ---------------------------------------------------------------------------------- Azure, GCS


@pytest.fixture
def az_bucket(az_bucket: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The container of tests/conftest.py, stopping this test's collectors before it is removed
    (a collector still running would spend its shutdown retrying uploads into nothing)."""
    try:
        yield az_bucket
    finally:
        stop_all(request.node.stash.get(RUNNING_COLLECTORS, []))


@pytest.fixture
def gs_bucket(gs_bucket: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The bucket of tests/conftest.py, stopping this test's collectors before it is removed."""
    try:
        yield gs_bucket
    finally:
        stop_all(request.node.stash.get(RUNNING_COLLECTORS, []))


@pytest.fixture
def own_object_store(own_object_store: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Emulators of a test's own (tests/conftest.py), stopping its collectors before them (thawed
    first: a collector cannot finish its uploads into a frozen store)."""
    try:
        yield own_object_store
    finally:
        for store in own_object_store.stores:
            store.emulator.thaw()
        stop_all(request.node.stash.get(RUNNING_COLLECTORS, []))
