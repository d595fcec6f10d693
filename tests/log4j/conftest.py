"""Fixtures for the log4j bridge tests: the reference harness, compiled once per session."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .reference import JAR, reset_logging

HARNESS_SRC = Path(__file__).parent / "harness"


@pytest.fixture(scope="session")
def log4j_harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled harness directory; skips (with the reason) only if javac or the jar is missing."""
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip(
            "javac/java not found: install a JDK (Debian: default-jdk-headless) to compare with log4j"
        )
    if not JAR.exists():
        pytest.skip(f"{JAR} not found: install Debian's liblog4j1.2-java to compare with log4j 1.2.17")
    sources = sorted(HARNESS_SRC.rglob("*.java"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "logbridge" / f"harness-{digest}"
    if not (cache / "Harness.class").exists():
        build = tmp_path_factory.mktemp("harness")
        subprocess.run(
            ["javac", "-nowarn", "-encoding", "UTF-8", "-cp", str(JAR), "-d", str(build), *map(str, sources)],
            check=True,
            capture_output=True,
        )
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(build, cache, dirs_exist_ok=True)
        except OSError:
            return build  # read-only home: use the session's copy
    return cache


@pytest.fixture
def paris_tz() -> Iterator[None]:
    """Local time in Europe/Paris (the JVM is started with the same zone): offsets are non-zero."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Paris"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.fixture
def clean_logging() -> Iterator[None]:
    """Whatever a test configured (handlers, levels, ``logging.lastResort``) is undone after it."""
    saved = logging.lastResort
    yield
    reset_logging()
    logging.lastResort = saved
