"""``logbridge ship``: the sidecar that takes a node's audit files to the collector."""

from __future__ import annotations

import logging
import queue
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import click

from .config import load

if TYPE_CHECKING:
    from .discover import IdleInput
    from .engine import Totals

# Exit codes of ``ship --once``, so that cron can tell "all shipped" from "look at this node".
EXIT_SHIPPED = 0  # every line found was shipped
EXIT_NOT_DELIVERED = 1  # lines refused by the collector (local dead letter) or lost before read
# 2: invalid config or state_dir in use, nothing shipped (a ConfigError: cli.main exits 2)
EXIT_INPUT_MISSING = 3  # an input's directory does not exist (the other inputs were shipped)


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    # One line per request would drown what matters (retries, refusals, losses).
    logging.getLogger("httpx").setLevel(logging.WARNING)


def once_exit_code(totals: Totals, idle: list[IdleInput]) -> int:
    """The exit code of a ``--once`` run that went to its end: lines not delivered come first
    (the summary line names every problem anyway)."""
    if totals.dead_lettered_lines or totals.lost_bytes:
        return EXIT_NOT_DELIVERED
    if any(item.missing for item in idle):
        return EXIT_INPUT_MISSING
    return EXIT_SHIPPED


@click.command("ship")
@click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Shipper YAML file."
)
@click.option("--once", is_flag=True, help="Ship the backlog of the files found now, then exit.")
@click.option(
    "--status",
    is_flag=True,
    help="Print each file's lag (from the checkpoints), the bytes lost and the inputs that match no file; exit.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def ship(ctx: click.Context, config_path: str, once: bool, status: bool, verbose: bool) -> None:
    """Tail audit files and deliver every line to the collector exactly once.

    \b
    Exit codes:
      0  --once: every line found was shipped (the daemon: stopped by SIGTERM/SIGINT)
      1  --once: lines were refused by the collector (kept in <state_dir>/dead-letter)
         or bytes were lost (a file deleted or truncated before it was read; see the log)
      2  nothing shipped: invalid config, or another shipper uses this state_dir
      3  --once: an input's directory does not exist (the other inputs were shipped)
    """
    cfg = load(config_path)
    if status:
        from .status import render

        click.echo(render(cfg))
        return
    _setup_logging(verbose)
    from ..client.failover import shown
    from .discover import idle_inputs
    from .engine import Shipper
    from .metrics import Metrics
    from .progress import ShipProgress

    stop = threading.Event()
    wake: list[threading.Event] = []
    # The handler runs in the main thread between two bytecodes, possibly inside the loop's
    # ``wake.wait()`` while it holds that Event's (non-reentrant) lock: setting the Event from
    # the handler then deadlocked, and SIGTERM was ignored for good. The handler only puts the
    # signal on a SimpleQueue (reentrant by design); a thread sets the Events.
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def _relay() -> None:
        signals.get()
        stop.set()
        for event in wake:  # do not wait out the poll interval
            event.set()

    threading.Thread(target=_relay, name="signals", daemon=True).start()

    def _stop(signum: int, frame: FrameType | None) -> None:
        signals.put(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    metrics = Metrics()
    if cfg.metrics is not None:
        metrics.serve(cfg.metrics.host, cfg.metrics.port)
    shipper = Shipper(cfg, stop=stop, metrics=metrics)  # StateDirBusy: exit 2, as a bad config
    wake.append(shipper.wake)
    log = logging.getLogger("logbridge.shipper")
    idle = idle_inputs(list(cfg.inputs))
    for item in idle:
        if item.missing:
            then = "nothing shipped from it" if once else "nothing is read from it until it is created"
            log.warning("%s: %s", item, then)
        else:
            log.info("%s", item)
    if not once:
        log.info(
            "shipping %d inputs to %s as node %s",
            len(cfg.inputs),
            ", then ".join(shown(url) for url in cfg.collector.endpoints),
            cfg.node,
        )
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
        summary += f"; {totals.lost_bytes} bytes lost from {totals.lost_files} files before they were read (see the log)"
    for item in idle:
        summary += f"; {item}"
    click.echo(summary, err=True)
    ctx.exit(once_exit_code(totals, idle))
