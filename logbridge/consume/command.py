"""``logbridge consume --config FILE``: a writer draining NATS JetStream into the store."""

from __future__ import annotations

import asyncio
import json

import click

from .. import logsetup


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Writer YAML config (see config/writer.yaml).",
)
@click.option("--status", is_flag=True, help="Show the consumer's backlog and the claims each writer holds.")
@click.option(
    "--release",
    "release_id",
    metavar="WRITER_ID",
    help="Release the claims of a writer that is gone for good (refused while it runs).",
)
@click.option("--force", is_flag=True, help="With --release: release a remote writer that looks alive.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def consume(
    config_path: str, status: bool, release_id: str | None, force: bool, fmt: str, log_level: str
) -> None:
    """Drain the JetStream stream into the partitioned store, exactly once, with any number of
    writers sharing one durable consumer (docs/nats.md, Writers)."""
    from ..errors import ConfigError
    from .config import load

    if status or release_id:
        logsetup.setup("WARNING")
        config = load(config_path)
        from . import status as ops

        try:
            if status:
                report = asyncio.run(ops.status(config))
                click.echo(json.dumps(report, indent=2) if fmt == "json" else ops.render(report))
                return
            assert release_id is not None
            released, warnings = asyncio.run(ops.release(config, release_id, force))
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: {exc}", source=config_path) from None
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        click.echo(f"released {released} claims of writer {release_id}")
        return
    from .runner import run

    logsetup.setup(log_level)
    run(config_path)
