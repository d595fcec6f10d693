"""Small SVG charts drawn here, so that an HTML report opens offline with no script at all.

Every label is escaped (user names, services and topics come from the store). Hovering a bar or
a point shows its value through SVG's own ``<title>``.
"""

from __future__ import annotations

from html import escape

PALETTE = ["#4269d0", "#efb118", "#ff725c", "#6cc5b0", "#3ca951", "#ff8ab7", "#a463f2", "#97bbf5", "#9c6b4e"]
WIDTH, HEIGHT = 900, 300
LEFT, RIGHT, TOP, BOTTOM = 70, 190, 20, 70


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** len(str(int(value))) / 10
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def _frame(
    title: str, top: float, body: list[str], series: list[str], x_labels: list[tuple[float, str]]
) -> str:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="chart">'
    ]
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        value = top * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')
    for x, label in x_labels:
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="end" '
            f'transform="rotate(-35 {x:.1f} {HEIGHT - BOTTOM + 14})">{escape(label)}</text>'
        )
    parts.extend(body)
    for i, name in enumerate(series):
        y = TOP + 14 * i + 6
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{y - 8}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{WIDTH - RIGHT + 26}" y="{y + 1}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _sparse_labels(labels: list[str], xs: list[float], most: int = 16) -> list[tuple[float, str]]:
    step = max(1, -(-len(labels) // most))
    return [(xs[i], labels[i]) for i in range(0, len(labels), step)]


def line_chart(title: str, x_labels: list[str], series: dict[str, list[float]]) -> str:
    """One line per series over the same x positions (e.g. events per hour per topic)."""
    if not x_labels:
        return '<p class="empty">no events</p>'
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max((max(v) for v in series.values() if v), default=0))
    n = len(x_labels)
    xs = [LEFT + (plot_w * i / (n - 1) if n > 1 else plot_w / 2) for i in range(n)]
    body = []
    for i, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{x:.1f},{TOP + plot_h - plot_h * v / top:.1f}" for x, v in zip(xs, values, strict=True)
        )
        body.append(
            f'<polyline fill="none" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="1.5" points="{points}">'
            f"<title>{escape(name)}</title></polyline>"
        )
    return _frame(title, top, body, list(series), _sparse_labels(x_labels, xs))


def bar_chart(title: str, x_labels: list[str], series: dict[str, list[float]]) -> str:
    """Grouped bars: one group per x label, one bar per series (e.g. logins and failures per day)."""
    if not x_labels:
        return '<p class="empty">no events</p>'
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = _nice_max(max((max(v) for v in series.values() if v), default=0))
    group = plot_w / len(x_labels)
    bar = max(1.0, group * 0.8 / max(1, len(series)))
    body = []
    centres = []
    for g, label in enumerate(x_labels):
        x0 = LEFT + group * g + group * 0.1
        centres.append(x0 + group * 0.4)
        for i, (name, values) in enumerate(series.items()):
            h = plot_h * values[g] / top
            body.append(
                f'<rect x="{x0 + bar * i:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[i % len(PALETTE)]}"><title>{escape(label)} · {escape(name)}: {values[g]:g}</title></rect>'
            )
    return _frame(title, top, body, list(series), _sparse_labels(x_labels, centres))
