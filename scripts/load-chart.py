#!/usr/bin/env python3
"""Draws the load generator's scaling curves (CSV from scripts/load-sweep.sh) as an SVG.

Standard library only. Two panels: against subscribers and against rooms (log x axis). Each
shows the forwarded packets per second of SFU CPU time (the capacity of one core at that
shape) and the packets per second actually forwarded at the offered rate, as the mean of the
runs with a bar from the lowest to the highest run.

    python3 scripts/load-chart.py docs/load-sweep.csv docs/load-scaling.svg
"""
import csv
import math
import sys
from collections import defaultdict

W, H = 980, 430
PANEL_W, PANEL_H = 400, 300
LEFT, TOP = 90, 60
GAP = 90
SERIES = [
    ("forwarded_per_cpu_s", "pkt per SFU CPU-second", "#1f77b4"),
    ("out_pps", "pkt/s forwarded (offered rate)", "#d62728"),
]


def load(path):
    rows = list(csv.DictReader(open(path)))
    data = defaultdict(lambda: defaultdict(list))  # sweep -> x -> [row]
    for r in rows:
        x = int(r["subscribers"]) if r["sweep"] == "subscribers" else int(r["rooms"])
        data[r["sweep"]][x].append(r)
    return data


def nice_max(v):
    if v <= 0:
        return 1
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def fmt(v):
    if v >= 1e6:
        return f"{v / 1e6:g}M"
    if v >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def panel(out, x0, title, xlabel, points):
    xs = sorted(points)
    if not xs:
        return
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    if hi == lo:
        hi = lo + 1
    ymax = nice_max(max(float(r[k]) for x in xs for r in points[x] for k, _, _ in SERIES))

    def px(x):
        return x0 + (math.log10(x) - lo) / (hi - lo) * PANEL_W

    def py(y):
        return TOP + PANEL_H - y / ymax * PANEL_H

    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{TOP - 25}" text-anchor="middle" '
               f'font-weight="bold">{title}</text>')
    out.append(f'<rect x="{x0}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" '
               'fill="none" stroke="#444"/>')
    for i in range(6):
        y = ymax * i / 5
        out.append(f'<line x1="{x0}" x2="{x0 + PANEL_W}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{fmt(y)}</text>')
    for x in xs:
        out.append(f'<text x="{px(x):.1f}" y="{TOP + PANEL_H + 18}" '
                   f'text-anchor="middle">{x}</text>')
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{TOP + PANEL_H + 40}" '
               f'text-anchor="middle">{xlabel}</text>')
    for key, _, color in SERIES:
        line = []
        for x in xs:
            vals = [float(r[key]) for r in points[x]]
            mean = sum(vals) / len(vals)
            line.append(f"{px(x):.1f},{py(mean):.1f}")
            out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{py(min(vals)):.1f}" '
                       f'y2="{py(max(vals)):.1f}" stroke="{color}" stroke-width="2"/>')
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(mean):.1f}" r="3.5" fill="{color}"/>')
            loss = max(float(r["loss_pct"]) for r in points[x])
            if key == "out_pps" and loss > 0:
                out.append(f'<text x="{px(x) + 5:.1f}" y="{py(mean) + 14:.1f}" fill="{color}" '
                           f'font-size="10">{loss:.2g}% loss</text>')
        out.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="{color}" '
                   'stroke-width="1.5"/>')


def main():
    src, dst = sys.argv[1], sys.argv[2]
    data = load(src)
    offered = next((r["offered_out_pps"] for s in data.values() for rs in s.values()
                    for r in rs), "?")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>']
    panel(out, LEFT, "1 publisher, N subscribers", "subscribers (log)",
          data.get("subscribers", {}))
    panel(out, LEFT + PANEL_W + GAP, "N rooms × (2 publishers, 5 subscribers)", "rooms (log)",
          data.get("rooms", {}))
    ly = H - 22
    for i, (_, label, color) in enumerate(SERIES):
        x = LEFT + i * 330
        out.append(f'<rect x="{x}" y="{ly - 10}" width="14" height="10" fill="{color}"/>')
        out.append(f'<text x="{x + 20}" y="{ly}">{label}</text>')
    out.append(f'<text x="{LEFT + 680}" y="{ly}">offered: {float(offered):,.0f} pkt/s, '
               '1200 B, AES-GCM</text>')
    out.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
