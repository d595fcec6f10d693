"""``logbridge collect --config FILE``: run the central collector."""

from __future__ import annotations

import click

from .. import logsetup


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Collector YAML config (see config/collector.yaml).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def collect(config_path: str, log_level: str) -> None:
    """Run the central collector: receive, unwrap, route and durably store audit events."""
    from .server import run

    logsetup.setup(log_level)
    run(config_path)
