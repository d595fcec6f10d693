"""Option values the commands share, parsed once (``logbridge verify``, ``logbridge report``)."""

from __future__ import annotations

from typing import Any

import click
import yaml


def storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``-o KEY=VALUE`` options as a destination's ``storage_options``: values read as YAML
    scalars (``true``, ``5``), dotted keys nested (``client_kwargs.endpoint_url=…``)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--storage-option")
        current: dict[str, Any] = options
        *parents, leaf = key.split(".")
        for part in parents:  # client_kwargs.endpoint_url=… nests
            current = current.setdefault(part, {})
        current[leaf] = yaml.safe_load(value) if value else ""
    return options
