"""The optimization report as one self-contained HTML page (no external URLs, no scripts).

In: what `hnfc.optimize` returns (a module with `.report` and `.program`), a `Report`, or the
report's dict (`Report.to_dict()`, the JSON the CLI writes, the report inside a .pt2). Out: an
HTML string, written to `path` when one is given. Sections (element ids, stable for tests and
links): `summary`, `rewrites`, `errors` (per-output histograms of bits of error before and after,
matplotlib rendered to inline SVG), `graph` (one row per node: op, type, dtype, condition number
and predicted bits lost as a coloured bar), `precision`, `timeline` (time per stage), `egraph`,
`warnings`.

    hnfc.report_html(hnfc.optimize(model, x), "report.html")

It renders only the data it is given: the graph's predicted bits are the report's `node_costs`,
which the pipeline computes on the ranges it optimized with. Where hnfc.report sits: above
verify and precision, below the pipeline.
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

SECTIONS = ("summary", "rewrites", "errors", "graph", "precision", "timeline", "egraph", "warnings")
MAX_GRAPH_ROWS = 1500  # a page stays usable; the rest is summarised

_STAGE_COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#bab0ac"]
_DTYPE_COLOURS = {"f64": "#6a3d9a", "f32": "#1f78b4", "bf16": "#e66101", "f16": "#d4a000"}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:20px;font-weight:600}
header p{margin:2px 0 0;color:#b8c0cc;font-size:13px}
nav{padding:6px 28px;background:#e9ecf1;font-size:13px}
nav a{margin-right:14px;color:#33507a;text-decoration:none}
main{padding:8px 28px 40px;max-width:1200px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:14px 0;padding:12px 18px}
h2{font-size:16px;margin:2px 0 10px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #eceff3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,monospace;word-break:break-word}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #dde1e7;border-radius:6px;padding:8px 12px;min-width:150px;background:#fafbfc}
.card b{display:block;font-size:20px}
.card span{color:#5b6475;font-size:12px}
.good{color:#1a7f37}.bad{color:#b42318}.muted{color:#6b7385}
.dt{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-size:12px}
.bar{display:inline-block;height:10px;border-radius:2px;vertical-align:middle}
.hists{display:flex;flex-wrap:wrap;gap:12px}
.hists figure{margin:0}
.hists figcaption{font-size:12px;color:#5b6475}
.legend span{margin-right:12px;font-size:12px}
.nowrap{white-space:nowrap}
"""


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any, fmt: str = ".2f") -> str:
    if x is None:
        return "–"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return _esc(x)
    if math.isnan(x):
        return "nan"
    return format(x, fmt)


def _as_dict(report: Any) -> dict:
    if report is None:
        return {}
    if isinstance(report, Mapping):
        return dict(report)
    if hasattr(report, "to_dict"):
        return report.to_dict()
    if is_dataclass(report):
        return asdict(report)
    raise TypeError(f"report_html: expected a module from hnfc.optimize, a Report or a dict, got {type(report).__name__}")


def _bits_colour(bits: float, scale: float) -> str:
    """Green (0 bits) through amber to red (the scale or more); hazards are dark red."""
    if bits is None or math.isnan(bits):
        return "#9aa1ad"
    if bits >= 1000:
        return "#7f0000"
    t = max(0.0, min(1.0, bits / scale)) if scale > 0 else 0.0
    hue = 120 * (1 - t)  # 120 green -> 0 red
    return f"hsl({hue:.0f},70%,{45 - 8 * t:.0f}%)"


# --------------------------------------------------------------------------------------------
# sections


def _summary(rep: dict, title: str) -> str:
    outs = rep.get("outputs") or []
    cards = [
        (f"{len(rep.get('rewrites') or [])}", "rewrites applied"),
        (f"{len(rep.get('rewrites_refused') or [])}", "rewrites refused"),
        (f"{rep.get('nodes_before', 0)} → {rep.get('nodes_after', 0)}", "IR nodes"),
        (f"{_num(rep.get('predicted_bits_before'), '.1f')} → {_num(rep.get('predicted_bits_after'), '.1f')}", "predicted bits lost"),
    ]
    pb, pa = rep.get("predicted_before") or {}, rep.get("predicted_after") or {}
    if pb and pa:  # the itemized prediction (hnfc.analysis.Prediction): it moves when one hazard goes
        cards[-1] = (" → ".join(f"{p.get('hazards', 0)} / {p.get('unbounded', 0)} / {_num(p.get('bits'), '.1f')}" for p in (pb, pa)),
                     "predicted: hazards / unbounded nodes / bits")
    if outs:
        b = max(o["before_max"] for o in outs)
        a = max(o["after_max"] for o in outs)
        bm = sum(o["before_mean"] for o in outs) / len(outs)
        am = sum(o["after_mean"] for o in outs) / len(outs)
        cards.append((f"{bm:.2f} → {am:.2f}", "mean bits of error (measured)"))
        cards.append((f"{b:.1f} → {a:.1f}", "max bits of error (measured)"))
    if rep.get("low_precision_share") is not None:
        cards.append((f"{rep['low_precision_share']:.1%}", "FLOPs in bf16/f16"))
    total = sum((rep.get("times") or {}).values())
    cards.append((f"{total:.2f} s", "optimizer time"))
    body = "".join(f'<div class="card"><b>{_esc(v)}</b><span>{_esc(k)}</span></div>' for v, k in cards)
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{body}</div></section>'


def _rewrite_rows(rows: Sequence[dict], refused: bool) -> str:
    out = []
    for r in rows:
        where = ", ".join(f"%{v}" for v in r.get("values") or ()) or "new value"
        bm, am = r.get("before_mean"), r.get("after_mean")
        if bm is not None and am is not None:
            gained = bm - am
            cls = "good" if gained > 0.005 else ("bad" if gained < -0.005 else "muted")
            gain = f'<span class="{cls}">{gained:+.2f}</span>'
            measured = f"{_num(bm)} / {_num(r.get('before_max'), '.1f')} → {_num(am)} / {_num(r.get('after_max'), '.1f')}"
        else:
            gain, measured = '<span class="muted">–</span>', '<span class="muted">not measured</span>'
        why = f"<br><span class='bad'>{_esc(r.get('reason') or 'refused')}</span>" if refused else ""
        out.append(
            f"<tr><td class='nowrap'><code>{_esc(where)}</code></td><td>{_esc(', '.join(r.get('rules') or ()))}{why}</td>"
            f"<td><code>{_esc(r.get('before'))}</code></td><td><code>{_esc(r.get('after'))}</code></td>"
            f"<td class='num'>{measured}</td><td class='num'>{gain}</td></tr>"
        )
    return "".join(out)


def _rewrites(rep: dict) -> str:
    head = ("<tr><th>at</th><th>rules</th><th>before</th><th>after</th>"
            "<th class='num'>local bits of error, mean / max</th><th class='num'>bits gained (mean)</th></tr>")
    applied = rep.get("rewrites") or []
    refused = rep.get("rewrites_refused") or []
    parts = ['<section id="rewrites"><h2>Rewrites</h2>']
    if applied:
        parts.append("<p class='muted'>Each rewrite was measured on its own neighbourhood against the mpmath reference, "
                     "fed with the original program's values (local verification).</p>")
        parts.append(f"<table>{head}{_rewrite_rows(applied, False)}</table>")
    else:
        parts.append("<p>No rewrite applied: the program is already in its most stable known form.</p>")
    if refused:
        parts.append(f"<h3>Refused (found, measured worse, original kept)</h3><table>{head}{_rewrite_rows(refused, True)}</table>")
    parts.append("</section>")
    return "".join(parts)


def _histogram_svg(before: Sequence[int], after: Sequence[int], index: int) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    nz = [k for k, c in enumerate(list(before) + list(after)) if c]
    hi = max(8, (max(k % len(before) for k in nz) + 2) if nz else 8)
    hi = min(hi, len(before))
    xs = list(range(hi))
    fig = Figure(figsize=(5.2, 2.6), dpi=96)
    FigureCanvasSVG(fig)
    ax = fig.add_subplot()
    w = 0.42
    ax.bar([x - w / 2 for x in xs], list(before)[:hi], width=w, color="#d62728", alpha=0.85, label="before")
    ax.bar([x + w / 2 for x in xs], list(after)[:hi], width=w, color="#2ca02c", alpha=0.85, label="after")
    ax.set_xlabel("bits of error (whole bits; 0 = correctly rounded)")
    ax.set_ylabel("elements")
    ax.set_title(f"output {index}", fontsize=10)
    ax.set_xticks(xs if hi <= 24 else xs[:: max(1, hi // 16)])
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    buf = io.StringIO()
    with _svg_text():
        fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


class _svg_text:
    """Text as <text> (small, selectable, no glyph paths), restored afterwards."""

    def __enter__(self):
        import matplotlib

        self._old = {k: matplotlib.rcParams[k] for k in ("svg.fonttype", "svg.hashsalt")}
        matplotlib.rcParams["svg.fonttype"] = "none"
        matplotlib.rcParams["svg.hashsalt"] = "hnfc"  # deterministic ids
        return self

    def __exit__(self, *exc):
        import matplotlib

        matplotlib.rcParams.update(self._old)


def _errors(rep: dict) -> str:
    outs = rep.get("outputs") or []
    parts = ['<section id="errors"><h2>Bits of error per output, against the mpmath reference</h2>']
    if not outs:
        why = "no rewrite was applied, so nothing needed measuring" if not rep.get("rewrites") else "outputs were not measured whole"
        parts.append(f"<p class='muted'>Not measured whole ({_esc(why)}).</p>")
    else:
        parts.append("<table><tr><th>output</th><th class='num'>before mean / max</th><th class='num'>after mean / max</th><th>kept</th></tr>")
        for o in outs:
            kept = "<span class='good'>rewritten</span>" if o.get("accepted") else "<span class='bad'>original (rewrite refused)</span>"
            parts.append(f"<tr><td>{o['index']}</td><td class='num'>{_num(o['before_mean'])} / {_num(o['before_max'], '.1f')}</td>"
                         f"<td class='num'>{_num(o['after_mean'])} / {_num(o['after_max'], '.1f')}</td><td>{kept}</td></tr>")
        parts.append("</table><div class='hists'>")
        for o in outs:
            hb, ha = o.get("histogram_before"), o.get("histogram_after")
            if hb and ha:
                parts.append(f"<figure>{_histogram_svg(hb, ha, o['index'])}<figcaption>elements per bit of error, "
                             f"over all verification inputs ({sum(hb)} elements)</figcaption></figure>")
            else:
                parts.append(f"<p class='muted'>output {o['index']}: no histogram in this report.</p>")
        parts.append("</div>")
    parts.append("</section>")
    return "".join(parts)


def _graph(rep: dict, program) -> str:
    parts = ['<section id="graph"><h2>The optimized program</h2>']
    dtypes = rep.get("dtypes") or {}
    if program is None and not dtypes:
        parts.append("<p class='muted'>Pass the module <code>hnfc.optimize</code> returned (it carries <code>.program</code>) to see the graph.</p></section>")
        return "".join(parts)
    costs = {int(k.lstrip("%")): tuple(v) for k, v in (rep.get("node_costs") or {}).items()}
    note = "ranges as the optimizer saw them (declared, parameters, observed on the verification inputs)" if costs else "predicted bits not in this report"
    finite = [b for _, b, _ in costs.values() if b < 1000]
    scale = max(8.0, max(finite, default=0.0))
    parts.append(
        "<p class='muted'>One row per computed node, in program order. The bar is the node's predicted bits lost "
        f"(its condition number on its input box, plus hazards), coloured from green (0) to red ({scale:.0f} bits or more); "
        f"{_esc(note)}. dtype: what the node runs in (chosen by the precision stage when it ran; <code>to</code> nodes are its casts).</p>"
    )
    parts.append("<p class='legend'>" + "".join(f"<span><i class='dt' style='background:{c}'>{d}</i></span>" for d, c in _DTYPE_COLOURS.items()) + "</p>")
    rows_src: list[tuple[int, str, str, str, str]] = []  # id, op, type, dtype, original dtype
    if program is not None:
        for i, n in enumerate(program.nodes):
            if n.op in ("param", "const"):
                continue
            # the program as lowered: casts inserted, every node's type carries its dtype (report.dtypes
            # is keyed by the ids before casts were inserted: see the precision section)
            dt = getattr(n.type, "dtype", "")
            rows_src.append((i, n.op, str(n.type), dt, dt))
    else:
        for key, e in dtypes.items():
            rows_src.append((int(str(key).lstrip("%")), e.get("op", "?"), "", e["dtype"], e.get("original", e["dtype"])))
    if costs:
        parts.append(_strip_svg([(i, costs[i][1]) for i, *_ in rows_src if i in costs], scale))
    parts.append("<table><tr><th>value</th><th>op</th><th>type</th><th>dtype</th><th class='num'>cond</th><th>predicted bits lost</th></tr>")
    for i, op, typ, dt, orig in rows_src[:MAX_GRAPH_ROWS]:
        colour = _DTYPE_COLOURS.get(dt, "#5b6475")
        dtag = f"<i class='dt' style='background:{colour}'>{_esc(dt)}</i>" + (f" <span class='muted'>(was {_esc(orig)})</span>" if orig != dt else "")
        if i in costs:
            cond, bits, reason = costs[i]
            width = 4 + 160 * (min(bits, scale) / scale if scale else 0)
            label = "hazard" if bits >= 1000 else f"{bits:.1f}"
            tip = f" title='{_esc(reason)}'" if reason else ""
            bar = f"<i class='bar' style='width:{width:.0f}px;background:{_bits_colour(bits, scale)}'{tip}></i> {label}"
            cond_s = "–" if cond is None else ("∞" if isinstance(cond, float) and math.isinf(cond) else _num(cond, ".3g"))
        elif op == "input":
            bar, cond_s = "<span class='muted'>input</span>", ""
        else:
            bar, cond_s = "<span class='muted'>–</span>", ""
        parts.append(f"<tr><td><code>%{i}</code></td><td><code>{_esc(op)}</code></td><td><code>{_esc(typ)}</code></td><td>{dtag}</td>"
                     f"<td class='num'>{cond_s}</td><td>{bar}</td></tr>")
    parts.append("</table>")
    if len(rows_src) > MAX_GRAPH_ROWS:
        parts.append(f"<p class='muted'>… and {len(rows_src) - MAX_GRAPH_ROWS} more nodes (not shown).</p>")
    parts.append("</section>")
    return "".join(parts)


def _strip_svg(items: Sequence[tuple[int, float]], scale: float) -> str:
    """The whole program at a glance: one column per node, height and colour by predicted bits."""
    if not items:
        return ""
    n = len(items)
    width = 1100
    w = width / n
    h = 60
    rects = []
    for k, (i, bits) in enumerate(items):
        frac = 1.0 if bits >= 1000 else min(bits, scale) / scale
        bh = 3 + (h - 3) * frac
        rects.append(f"<rect x='{k * w:.2f}' y='{h - bh:.2f}' width='{max(w - 0.3, 0.6):.2f}' height='{bh:.2f}' fill='{_bits_colour(bits, scale)}'>"
                     f"<title>%{i}: {'hazard' if bits >= 1000 else f'{bits:.1f} bits'}</title></rect>")
    return (f"<svg class='strip' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h + 16}' viewBox='0 0 {width} {h + 16}' role='img' "
            f"aria-label='predicted bits lost per node'>{''.join(rects)}"
            f"<text x='0' y='{h + 13}' font-size='11' fill='#5b6475'>first node</text>"
            f"<text x='{width}' y='{h + 13}' font-size='11' fill='#5b6475' text-anchor='end'>output</text></svg>")


def _precision(rep: dict) -> str:
    p = rep.get("precision") or {}
    parts = ['<section id="precision"><h2>Precision</h2>']
    if not p:
        parts.append("<p class='muted'>Precision stage off (pass <code>target=</code> to choose a dtype per node).</p></section>")
        return "".join(parts)
    counts: dict[str, int] = {}
    for e in (rep.get("dtypes") or {}).values():
        counts[e["dtype"]] = counts.get(e["dtype"], 0) + 1
    errs = ", ".join(f"{e:.3g}" for e in p.get("errors", []))
    met = "<span class='good'>met</span>" if p.get("met") else "<span class='bad'>NOT met</span>"
    share = rep.get("low_precision_share")
    parts.append(f"<p>Target normwise error {_num(p.get('target'), 'g')}: {met} (measured {_esc(errs)}). Menu {_esc(', '.join(p.get('menu', [])))}; "
                 f"nodes per dtype {_esc(', '.join(f'{k} × {v}' for k, v in sorted(counts.items())))}; "
                 f"low-precision FLOP share {'–' if share is None else f'{share:.1%}'}; {p.get('casts', 0)} casts.</p>")
    if rep.get("promotions"):
        parts.append("<table><tr><th>kind</th><th>value</th><th>op</th><th>from → to</th><th>reason</th></tr>")
        for q in rep["promotions"]:
            parts.append(f"<tr><td>{_esc(q.get('kind'))}</td><td><code>%{_esc(q.get('value'))}</code></td><td><code>{_esc(q.get('op'))}</code></td>"
                         f"<td>{_esc(q.get('from_dtype'))} → {_esc(q.get('to_dtype'))}</td><td>{_esc(q.get('reason'))}</td></tr>")
        parts.append("</table>")
    parts.append("</section>")
    return "".join(parts)


def _timeline(rep: dict) -> str:
    times = {k: float(v) for k, v in (rep.get("times") or {}).items()}
    parts = ['<section id="timeline"><h2>Stage timeline</h2>']
    total = sum(times.values())
    if not times or total <= 0:
        parts.append("<p class='muted'>No timings recorded.</p></section>")
        return "".join(parts)
    width, h = 1100, 34
    x, rects, legend = 0.0, [], []
    for k, (stage, t) in enumerate(times.items()):
        w = width * t / total
        c = _STAGE_COLOURS[k % len(_STAGE_COLOURS)]
        rects.append(f"<rect x='{x:.2f}' y='0' width='{max(w, 0.5):.2f}' height='{h}' fill='{c}'><title>{_esc(stage)}: {t:.3f} s</title></rect>")
        if w > 60:
            rects.append(f"<text x='{x + 4:.2f}' y='21' font-size='12' fill='#fff'>{_esc(stage)} {t:.2f}s</text>")
        legend.append(f"<tr><td><i class='bar' style='width:12px;background:{c}'></i> {_esc(stage)}</td><td class='num'>{t:.3f}</td><td class='num'>{t / total:.1%}</td></tr>")
        x += w
    parts.append(f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{h}' viewBox='0 0 {width} {h}' role='img' aria-label='time per stage'>{''.join(rects)}</svg>")
    parts.append(f"<table><tr><th>stage</th><th class='num'>seconds</th><th class='num'>share</th></tr>{''.join(legend)}"
                 f"<tr><th>total</th><th class='num'>{total:.3f}</th><th></th></tr></table></section>")
    return "".join(parts)


def _egraph(rep: dict) -> str:
    e = rep.get("egraph") or {}
    parts = ['<section id="egraph"><h2>E-graph</h2>']
    if not e:
        parts.append("<p class='muted'>No e-graph statistics (the optimizer did not run to saturation).</p></section>")
        return "".join(parts)
    labels = {"nodes": "e-nodes", "classes": "e-classes", "iterations": "iterations (max over regions)", "stop_reason": "stopped",
              "regions": "regions", "reused_regions": "regions reused (identical to an optimized one)"}
    rows = "".join(f"<tr><td>{_esc(labels.get(k, k))}</td><td>{_esc(v)}</td></tr>" for k, v in e.items())
    rows += f"<tr><td>IR nodes before → after</td><td>{rep.get('nodes_before', 0)} → {rep.get('nodes_after', 0)}</td></tr>"
    parts.append(f"<table>{rows}</table></section>")
    return "".join(parts)


def _warnings(rep: dict) -> str:
    ws = rep.get("warnings") or []
    body = "".join(f"<li>{_esc(w)}</li>" for w in ws) if ws else "<li class='muted'>none</li>"
    return f'<section id="warnings"><h2>Warnings</h2><ul>{body}</ul></section>'


# --------------------------------------------------------------------------------------------


def render(report: Any, *, program=None, title: str | None = None) -> str:
    """The page as a string. `report`: a Report or its dict; `program`: the optimized IR (optional)."""
    rep = _as_dict(report)
    title = title or "hnfc optimization report"
    if program is not None:
        ins = ", ".join(f"{program.nodes[i].attr.get('name')}: {program.nodes[i].type}" for i in program.inputs)
        sub = f"{len(program.nodes)} IR nodes · inputs {ins}"
    else:
        sub = f"{rep.get('nodes_after', 0)} IR nodes"
    nav = "".join(f"<a href='#{s}'>{s}</a>" for s in SECTIONS)
    body = "".join([
        _summary(rep, title), _rewrites(rep), _errors(rep), _graph(rep, program),
        _precision(rep), _timeline(rep), _egraph(rep), _warnings(rep),
    ])
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1><p>{_esc(sub)}</p></header><nav>{nav}</nav><main>{body}</main></body></html>\n"
    )


def report_html(module_or_report: Any, path: str | Path | None = None, *, program=None, title: str | None = None) -> str:
    """Write (when `path` is given) and return the report as one self-contained HTML page.

    `module_or_report`: what `hnfc.optimize` returns (its `.report` and `.program` are used), a
    `Report`, or a report dict. It renders only what it is given: the graph's predicted bits are
    the report's `node_costs` (computed by the pipeline).
    """
    report = getattr(module_or_report, "report", module_or_report)
    if program is None:
        program = getattr(module_or_report, "program", None)
    page = render(report, program=program, title=title)
    if path is not None:
        Path(path).write_text(page, encoding="utf-8")
    return page
