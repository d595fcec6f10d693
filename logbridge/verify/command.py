"""``logbridge verify STORE_URL``: exit 0 when every file matches its manifest and every chain
holds, 1 when anything was altered, removed or added, 2 for a usage error."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import orjson

from .. import envelope
from ..cliopts import storage_options
from ..config import resolve_secret
from ..errors import ConfigError, DestinationError
from ..sinks.fs import map_storage_errors, open_filesystem
from .check import Options, Verifier
from .findings import NOTICES, TAMPERING, Report


def _time(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    text = value if "T" in value or len(value) > 10 else value + "T00:00:00+0000"
    epoch = envelope.event_epoch(text)
    if epoch is None:
        raise click.BadParameter(
            f"{value!r} is not a time such as 2026-12-01 or 2026-12-01T10:00:00+0000", param_hint=option
        )
    return epoch


@click.command()
@click.argument("store_url")
@click.option("--key-env", metavar="NAME", help="Environment variable holding the manifests' HMAC key.")
@click.option("--key-file", metavar="FILE", help="File holding the manifests' HMAC key.")
@click.option("--since", metavar="TIME", help="Only files whose partition (or events) end after TIME.")
@click.option("--until", metavar="TIME", help="Only files whose partition (or events) start before TIME.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "-o",
    "--storage-option",
    "storage",
    multiple=True,
    metavar="KEY=VALUE",
    help="fsspec storage option, as a destination's storage_options (repeat; a.b=… nests).",
)
@click.option(
    "--threads", type=click.IntRange(1, 64), default=min(8, (os.cpu_count() or 2) * 2), show_default=True
)
def verify(
    store_url: str,
    key_env: str | None,
    key_file: str | None,
    since: str | None,
    until: str | None,
    fmt: str,
    storage: tuple[str, ...],
    threads: int,
) -> None:
    """Check every manifest and chain in a store; name what was altered, removed or added."""
    if key_env and key_file:
        raise click.UsageError("give --key-env or --key-file, not both")
    try:
        key = (
            resolve_secret(env=key_env, file=key_file, what="verify key").encode("utf-8")
            if key_env or key_file
            else None
        )
        fs, root = open_filesystem(store_url, storage_options(storage), "STORE_URL")
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    options = Options(key=key, since=_time(since, "--since"), until=_time(until, "--until"), threads=threads)
    tty = sys.stderr.isatty() and fmt == "text"
    try:
        with map_storage_errors("verify", f"cannot read {store_url}"):
            found = fs.exists(root)
        if not found:
            raise click.UsageError(f"nothing at {store_url} (is the URL the store's root?)")
        with map_storage_errors("verify", f"cannot read {store_url}"):
            report = _run(fs, root, options, tty)
    except DestinationError as exc:
        click.echo(f"logbridge verify: {exc}", err=True)
        sys.exit(2)
    if fmt == "json":
        click.echo(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        _text(report, store_url)
    sys.exit(1 if report.tampered else 0)


def _run(fs: Any, root: str, options: Options, tty: bool) -> Report:
    if not tty:
        return Verifier(fs, root, options).run()
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("verifying"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True
    ) as bar:
        task = bar.add_task("verify", total=None)
        verifier: Verifier

        def advance(files: int, done: int) -> None:
            bar.update(task, completed=done, total=verifier.total[1])

        verifier = Verifier(fs, root, options, progress=advance)
        return verifier.run()


def _text(report: Report, url: str) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    rate = f", {report.bytes / report.seconds / 1e6:,.0f} MB/s" if report.seconds else ""
    console.print(
        f"{url}: {report.files} data files, {report.checked} hashed ({report.bytes / 1e6:,.1f} MB in "
        f"{report.seconds:.1f}s{rate}), {report.manifests} manifests, {report.retention_records} retention records"
    )
    for f in report.findings:
        style = "red" if f.tampering else "yellow"
        where = f.file or ""
        if f.line is not None or f.original_line is not None:
            where += f" line {f.line if f.line is not None else '-'}"
            if f.original_line is not None and f.original_line != f.line:
                where += f" (sealed as line {f.original_line})"
        chain = f" [{f.stream} #{f.seq}]" if f.stream else ""
        detail = f": {f.detail}" if f.detail else ""
        console.print(f"[{style}]{f.kind}[/{style}] {where}{chain}{detail}", markup=True, soft_wrap=True)
    counts = report.counts()
    if report.tampered:
        summary = ", ".join(f"{n} {k}" for k, n in counts.items() if k in TAMPERING)
        console.print(f"[bold red]TAMPERED[/bold red]: {summary}")
    else:
        notes = ", ".join(f"{n} {k}" for k, n in counts.items() if k in NOTICES)
        console.print(
            "[bold green]OK[/bold green]: every file matches its manifest, every chain holds"
            + (f" ({notes})" if notes else "")
        )
