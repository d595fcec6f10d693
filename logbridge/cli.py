"""The ``logbridge`` console script: thin glue over the parts.

Each subcommand lives beside the part it drives and is imported only when it runs, so that
``logbridge ship`` on a node does not pay for the collector's server imports.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from .errors import ConfigError

# name → "module:attribute" of a click.Command
_COMMANDS = {
    "collect": "logbridge.collector.command:collect",
    "ship": "logbridge.shipper.command:ship",
    "log4j": "logbridge.log4j.command:log4j",
    "demo": "logbridge.demo:demo",
    "consume": "logbridge.consume.command:consume",
    "report": "logbridge.report.command:report",
    "verify": "logbridge.verify.command:verify",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("logbridge"):
                return _not_built(cmd_name)
            raise
        command: click.Command = getattr(module, attr)
        return command


def _not_built(name: str) -> click.Command:
    @click.command(name=name, help=f"(not available in this build: {name})")
    def missing() -> None:
        raise click.ClickException(f"'{name}' is not available in this build of logbridge")

    return missing


@click.group(cls=LazyGroup)
@click.version_option(package_name="logbridge")
def cli() -> None:
    """logbridge: audit trails off the node, into one store nobody on the node can rewrite."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point; a bad config file is one clear message and exit code 2, never a traceback."""
    try:
        return cli.main(args=argv, prog_name="logbridge", standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"logbridge: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
