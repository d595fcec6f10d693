"""Formatting cost of the log4j layouts, in one run (issue 12).

The same records (MDC of 3 entries, an NDC, a location, one in ten with a 3-line throwable)
through a plain ``logging.Formatter`` (the reference), PatternLayout, XMLLayout (LocationInfo
and Properties) and HTMLLayout (LocationInfo). Rounds alternate between the formatters so that
each sees the same machine state; µs per record is the median over rounds, the ratio is to the
reference. CPU seconds and peak RSS of the whole run are printed at the end.

    python bench/log4j_layouts.py [--records 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import time

from logbridge.log4j import PatternLayoutFormatter
from logbridge.log4j.htmllayout import HTMLLayoutFormatter
from logbridge.log4j.xmllayout import XMLLayoutFormatter


def _records(n: int) -> list[logging.LogRecord]:
    out = []
    for i in range(n):
        r = logging.LogRecord(
            "com.example.deep.Service", logging.INFO, "/src/app/service.py", 42, f"event {i} <ok> & done",
            None, None, func="handle",
        )  # fmt: skip
        r.mdc = {"user": "admin", "apiCall": "/api/projects/get-summary", "requestId": str(i)}
        r.ndc = "req-17 step2"
        if i % 10 == 0:
            r.exc_text = "java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n\tat d.E.f(E.java:2)"
        out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    formatters: dict[str, logging.Formatter] = {
        "logging.Formatter (reference)": logging.Formatter(
            "%(asctime)s %(levelname)s [%(threadName)s] %(message)s"
        ),
        "PatternLayout %d %-5p [%t] %c{2} %X{user} - %m%n": PatternLayoutFormatter(
            "%d{ISO8601} %-5p [%t] %c{2} %X{user} - %m%n"
        ),
        "XMLLayout LocationInfo+Properties": XMLLayoutFormatter(location_info=True, properties=True),
        "HTMLLayout LocationInfo": HTMLLayoutFormatter(location_info=True),
    }
    records = _records(args.records)
    times: dict[str, list[float]] = {name: [] for name in formatters}
    for _ in range(args.rounds):
        for name, fmt in formatters.items():
            t0 = time.perf_counter()
            for r in records:
                fmt.format(r)
            times[name].append((time.perf_counter() - t0) / len(records) * 1e6)
    ref = statistics.median(times["logging.Formatter (reference)"])
    print(f"{'formatter':<52} {'µs/record':>10} {'ratio':>7}")
    for name, samples in times.items():
        med = statistics.median(samples)
        print(f"{name:<52} {med:>10.2f} {med / ref:>6.2f}x")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"CPU s {usage.ru_utime + usage.ru_stime:.2f}, peak RSS {usage.ru_maxrss / 1024:.1f} MB")


if __name__ == "__main__":
    main()
