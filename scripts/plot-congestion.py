#!/usr/bin/env python3
"""Draws a congestion-control scenario report as an SVG (standard library only).

The input is the CSV `sfu-core/tests/congestion_control.rs` writes for one subscriber when
CC_REPORT_DIR is set (columns t_s, capacity_kbps, estimate_kbps, layer, allowed,
link_queue_ms, pacer_ms, link_kbps, link_loss). Three panels share the time axis: the link's
capacity, the worker's estimate and the delivered rate; the selected and allowed simulcast
layer; the queueing delay in the link's buffer.

    CC_REPORT_DIR=/tmp/cc cargo test -p sfu-core --test congestion_control -- --nocapture
    python3 scripts/plot-congestion.py /tmp/cc/steps-sub.csv docs/congestion-control-steps.svg
"""

import csv
import sys
from xml.sax.saxutils import escape

WIDTH = 900
LEFT, RIGHT = 70, 20
PANELS = [  # (title, height, y max, unit)
    ("rate", 230, None, "Mbit/s"),
    ("layer", 110, 2.5, ""),
    ("queue", 140, None, "ms"),
]
GAP = 38
TOP = 40


def read(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            def num(key):
                v = r.get(key, "")
                return float(v) if v not in ("", None) else None

            rows.append(
                {
                    "t": num("t_s"),
                    "capacity": num("capacity_kbps"),
                    "estimate": num("estimate_kbps"),
                    "layer": num("layer"),
                    "allowed": num("allowed"),
                    "queue": num("link_queue_ms"),
                    "link": num("link_kbps"),
                }
            )
    return [r for r in rows if r["t"] is not None]


def nice_max(v):
    for scale in (1, 10, 100, 1000, 10000):
        for step in (1, 1.25, 2, 2.5, 5):
            if v <= step * scale:
                return step * scale
    return v


def path(points, step=False):
    """An SVG path through (x, y) points; `None` y breaks the line."""
    d, prev = [], None
    for x, y in points:
        if y is None:
            prev = None
            continue
        if prev is None:
            d.append(f"M{x:.1f},{y:.1f}")
        elif step:
            d.append(f"H{x:.1f}V{y:.1f}")
        else:
            d.append(f"L{x:.1f},{y:.1f}")
        prev = (x, y)
    return " ".join(d)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rows = read(sys.argv[1])
    out = sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else sys.argv[1]
    if not rows:
        sys.exit("no rows")
    t_max = max(r["t"] for r in rows)
    plot_w = WIDTH - LEFT - RIGHT
    height = TOP + sum(p[1] for p in PANELS) + GAP * len(PANELS) + 10

    def x_of(t):
        return LEFT + plot_w * t / t_max

    rate_max = nice_max(
        max(
            max((r[k] or 0) for r in rows)
            for k in ("capacity", "estimate", "link")
        )
        / 1000
    )
    queue_max = nice_max(max((r["queue"] or 0) for r in rows) or 100)
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    y0 = TOP
    for name, h, y_max, unit in PANELS:
        if name == "rate":
            y_max = rate_max
        elif name == "queue":
            y_max = queue_max

        def y_of(v, y0=y0, h=h, y_max=y_max):
            return None if v is None else y0 + h - h * min(v, y_max) / y_max

        svg.append(
            f'<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{h}" fill="none" stroke="#999"/>'
        )
        ticks = [0, 1, 2] if name == "layer" else [y_max * i / 4 for i in range(5)]
        for v in ticks:
            y = y_of(v)
            svg.append(
                f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
            )
            label = f"{v:g}"
            svg.append(
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
            )
        label = {"rate": "Mbit/s", "layer": "layer", "queue": "queue ms"}[name]
        svg.append(
            f'<text x="14" y="{y0 + h / 2:.1f}" transform="rotate(-90 14 {y0 + h / 2:.1f})" '
            f'text-anchor="middle">{label}</text>'
        )
        series = []
        if name == "rate":
            series = [
                ("capacity", "#888", "6 3", True, lambda r: r["capacity"] and r["capacity"] / 1000),
                ("delivered", "#7bbf6a", None, False, lambda r: r["link"] / 1000 if r["link"] is not None else None),
                ("estimate", "#1f5fbf", None, False, lambda r: r["estimate"] and r["estimate"] / 1000),
            ]
        elif name == "layer":
            series = [
                ("allowed", "#e08a2c", "5 3", True, lambda r: r["allowed"]),
                ("selected", "#c0392b", None, True, lambda r: r["layer"]),
            ]
        else:
            series = [("link queue", "#8e44ad", None, False, lambda r: r["queue"])]
        legend_x = LEFT + 8
        for label, color, dash, step, get in series:
            d = path([(x_of(r["t"]), y_of(get(r))) for r in rows], step)
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            svg.append(
                f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>'
            )
            svg.append(
                f'<line x1="{legend_x}" x2="{legend_x + 18}" y1="{y0 - 8}" y2="{y0 - 8}" '
                f'stroke="{color}" stroke-width="2"{dash_attr}/>'
            )
            svg.append(f'<text x="{legend_x + 22}" y="{y0 - 4}">{escape(label)}</text>')
            legend_x += 30 + 7 * len(label) + 20
        y0 += h + GAP
    # Time axis under the last panel.
    axis_y = y0 - GAP
    step = 1 if t_max <= 12 else 2
    t = 0
    while t <= t_max + 1e-9:
        x = x_of(t)
        svg.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#999"/>')
        svg.append(f'<text x="{x:.1f}" y="{axis_y + 17}" text-anchor="middle">{t:g}</text>')
        t += step
    svg.append(
        f'<text x="{LEFT + plot_w / 2}" y="{axis_y + 32}" text-anchor="middle">time (s)</text>'
    )
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
