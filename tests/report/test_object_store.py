"""A report over ``s3://`` (moto in server mode): DuckDB reads the objects through the s3fs file
system registered with it, and answers what it answers over the same files on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_failures_over_s3_match_the_local_store(sample_store: Path, s3_server: Any, run_report: Any) -> None:
    fs = s3_server.filesystem()
    for path in sorted(sample_store.rglob("*.ndjson*")):
        if "/generic-failure/" in path.as_posix() or "/apinode-query/" in path.as_posix():
            fs.put_file(str(path), f"{s3_server.bucket}/audit/{path.relative_to(sample_store).as_posix()}")
    options = [
        f"--storage-option=endpoint_url={s3_server.endpoint_url}",
        "--storage-option=use_listings_cache=false",
    ]
    remote = run_report(f"s3://{s3_server.bucket}/audit", "failures", "--format", "json", *options)
    assert remote.exit_code == 0, remote.output
    local = run_report(str(sample_store), "failures", "--format", "json")
    assert orjson.loads(remote.stdout) == orjson.loads(local.stdout) != []
    # Pruned there too: a one-day question lists a few prefixes and reads that day's objects only.
    day = run_report(
        f"s3://{s3_server.bucket}/audit",
        "api-usage",
        "--since",
        "2020-02-18",
        "--until",
        "2020-02-19",
        *options,
    )
    assert day.exit_code == 0, day.output
    day_objects = [k for k in fs.find(f"{s3_server.bucket}/audit/apinode-query") if "/2020/02/18/" in k]
    assert f"from {len(day_objects)} files" in day.stderr
