"""``logbridge ship``: the sidecar that takes a node's audit files to the collector."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from .config import load


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    # One line per request would drown what matters (retries, refusals, losses).
    logging.getLogger("httpx").setLevel(logging.WARNING)


@click.command("ship")
@click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Shipper YAML file."
)
@click.option("--once", is_flag=True, help="Ship the backlog of the files found now, then exit.")
@click.option("--status", is_flag=True, help="Print each file's lag (from the checkpoints) and exit.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def ship(config_path: str, once: bool, status: bool, verbose: bool) -> None:
    """Tail audit files and deliver every line to the collector exactly once."""
    cfg = load(config_path)
    if status:
        from .status import render

        click.echo(render(cfg.state_dir))
        return
    _setup_logging(verbose)
    from .engine import Shipper, StateDirBusy
    from .metrics import Metrics
    from .progress import ShipProgress

    stop = threading.Event()
    wake: list[threading.Event] = []

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()
        for event in wake:  # do not wait out the poll interval
            event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    metrics = Metrics()
    if cfg.metrics is not None:
        metrics.serve(cfg.metrics.host, cfg.metrics.port)
    try:
        shipper = Shipper(cfg, stop=stop, metrics=metrics)
    except StateDirBusy as exc:
        raise click.ClickException(str(exc)) from None
    wake.append(shipper.wake)
    log = logging.getLogger("logbridge.shipper")
    if not once:
        log.info("shipping %d inputs to %s as node %s", len(cfg.inputs), cfg.collector.url, cfg.node)
        shipper.run()
        return
    # --once: the total is known after the first scan (run() does it and calls on_start).
    progress = ShipProgress(0)
    shipper.on_ack = progress.advance
    shipper.on_start = progress.set_total
    with progress:
        totals = shipper.run(once=True)
    summary = progress.line()
    if totals.dead_lettered_lines:
        summary += f"; {totals.dead_lettered_lines} lines refused by the collector, kept in {cfg.state_dir}/dead-letter"
    if totals.lost_bytes:
        summary += f"; {totals.lost_bytes} bytes lost (see the log)"
    click.echo(summary, err=True)
