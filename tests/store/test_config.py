"""The manifest and retention keys of a filesystem destination: errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from logbridge.config import validate
from logbridge.errors import ConfigError
from logbridge.sinks.config import FilesystemDestination


def dest(**keys: Any) -> dict[str, Any]:
    return {"name": "store", "url": "file:///tmp/x"} | keys


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"manifest": {"sign_key_env": "A", "sign_key_file": "b"}}, "not both"),
        ({"manifest": {"enabled": False, "sign_key_env": "A"}}, "manifests are disabled"),
        ({"manifest": {"sign_key": "inline"}}, "sign_key"),
        ({"retention": "400d", "path": "{topic}/%b"}, "retention needs partition times"),
        ({"retention": "400d", "manifest": {"enabled": False}}, "keep manifests enabled"),
        ({"retention": "0s"}, "retention must be more than 0"),
        ({"path": ".logbridge/{topic}/%Y"}, "may not start with '.'"),
    ],
)
def test_bad_keys_are_named(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(dest(**keys), FilesystemDestination, "collector.yaml")
    assert message in str(info.value)


def test_good_keys() -> None:
    d = validate(
        dest(retention="400d", retention_check="10m", manifest={"sign_key_env": "K", "line_digests": False}),
        FilesystemDestination,
    )
    assert d.retention == 400 * 86400 and d.retention_check == 600 and not d.manifest.line_digests
