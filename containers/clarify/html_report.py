"""The human report of a Clarify analysis: one self-contained HTML file with inline SVG plots.

No script, no stylesheet or font from the network: the file opens anywhere. Sections (each an
`<section id=...>`): `bias` (every metric per facet value, as a bar against its threshold when
one is configured), `global-shap` (mean |SHAP| per feature, a bar chart) and `shap-summary`
(per-feature beeswarm: each record's SHAP value, coloured by the feature's value).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

WIDTH = 720
ROW = 22
LEFT = 200
BAR_COLOUR = "#3b6ea5"
BAD_COLOUR = "#c0392b"

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:900px;color:#222}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #ddd;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#c0392b;font-weight:bold}
.error{color:#777;font-style:italic}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _esc(value)


def _bar_chart(items: Sequence[tuple[str, float]], limits: Mapping[str, float]) -> str:
    """Horizontal bars, symmetric around zero when any value is negative."""
    if not items:
        return "<p>No values.</p>"
    finite = [abs(v) for _, v in items if math.isfinite(v)] + [abs(t) for t in limits.values()]
    scale = max(finite + [1e-12])
    signed = any(v < 0 for _, v in items if math.isfinite(v))
    plot = WIDTH - LEFT - 60
    zero = LEFT + (plot / 2 if signed else 0)
    unit = (plot / 2 if signed else plot) / scale
    height = ROW * len(items) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             'role="img" font-size="12">']  # fmt: skip
    for index, (name, value) in enumerate(items):
        y = 5 + index * ROW
        limit = limits.get(name)
        bad = limit is not None and (not math.isfinite(value) or abs(value) > limit)
        colour = BAD_COLOUR if bad else BAR_COLOUR
        parts.append(f'<text x="{LEFT - 6}" y="{y + 14}" text-anchor="end">{_esc(name)}</text>')
        if math.isfinite(value):
            x0, x1 = sorted((zero, zero + value * unit))
            parts.append(
                f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 0.5):.1f}" height="14" '
                f'fill="{colour}"><title>{_esc(name)}: {value:.6g}</title></rect>'
            )
            parts.append(f'<text x="{max(x1, zero) + 4:.1f}" y="{y + 14}">{value:.4g}</text>')
        else:
            parts.append(f'<text x="{zero + 4:.1f}" y="{y + 14}">{value}</text>')
        if limit is not None:
            for edge in (limit, -limit) if signed else (limit,):
                x = zero + edge * unit
                parts.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 20}" stroke="#000" '
                    'stroke-dasharray="3,2"/>'
                )
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="0" y2="{height}" stroke="#999"/>')
    parts.append("</svg>")
    return "".join(parts)


def _bias_section(analysis: Mapping[str, Any], thresholds: Mapping[str, float]) -> str:
    out = ['<section id="bias"><h2>Bias metrics</h2>']
    if thresholds:
        limits = ", ".join(f"|{k}| ≤ {v:g}" for k, v in thresholds.items())
        out.append(f"<p>Thresholds (dashed lines): {_esc(limits)}</p>")
    for stage, title in (
        ("pre_training_bias_metrics", "Pre-training (the data)"),
        ("post_training_bias_metrics", "Post-training (the model's predictions)"),
    ):
        section = analysis.get(stage)
        if not section:
            continue
        label = f"{section.get('label')} {section.get('label_value_or_threshold')}"
        out.append(f"<h3>{_esc(title)}</h3><p>Label: {_esc(label)}</p>")
        for facet, groups in section.get("facets", {}).items():
            for group in groups:
                metrics = group.get("metrics", [])
                out.append(
                    f"<h4>Facet {_esc(facet)} = {_esc(group.get('value_or_threshold'))}</h4>"
                )
                bars = [
                    (m["name"], float(m["value"]))
                    for m in metrics
                    if isinstance(m.get("value"), int | float)
                ]
                out.append(_bar_chart(bars, thresholds))
                rows = []
                for m in metrics:
                    limit = thresholds.get(m["name"])
                    value = m.get("value")
                    bad = limit is not None and (
                        not isinstance(value, int | float) or abs(value) > limit
                    )
                    cell = (
                        f'<td class="error">{_esc(m.get("error"))}</td>'
                        if m.get("error")
                        else f'<td class="num{" bad" if bad else ""}">{_fmt(value)}</td>'
                    )
                    rows.append(
                        f"<tr><td>{_esc(m['name'])}</td><td>{_esc(m.get('description', ''))}"
                        f"</td>{cell}<td>{'' if limit is None else f'≤ {limit:g}'}</td></tr>"
                    )
                out.append(
                    "<table><tr><th>metric</th><th>description</th><th>value</th>"
                    f"<th>threshold</th></tr>{''.join(rows)}</table>"
                )
    out.append("</section>")
    return "".join(out)


def _beeswarm(values: np.ndarray, features: np.ndarray, names: Sequence[str]) -> str:
    """One row per feature (most important first); dots jittered vertically, coloured by the
    feature's value from blue (low) to red (high)."""
    order = np.argsort(-np.mean(np.abs(values), axis=0))
    scale = float(np.max(np.abs(values))) or 1.0
    plot = WIDTH - LEFT - 20
    zero = LEFT + plot / 2
    height = ROW * 2 * len(names) + 10
    rng = np.random.default_rng(0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             'role="img" font-size="12">']  # fmt: skip
    for row, feature in enumerate(order):
        y = 5 + row * ROW * 2 + ROW
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">'
                     f"{_esc(names[feature])}</text>")  # fmt: skip
        column = features[:, feature].astype(float)
        finite = column[np.isfinite(column)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        span = (high - low) or 1.0
        jitter = rng.uniform(-ROW * 0.8, ROW * 0.8, size=values.shape[0])
        for value, raw, dy in zip(values[:, feature], column, jitter, strict=True):
            share = (raw - low) / span if math.isfinite(raw) else 0.5
            red, blue = int(255 * share), int(255 * (1 - share))
            x = zero + value / scale * plot / 2
            parts.append(f'<circle cx="{x:.1f}" cy="{y + dy:.1f}" r="2" '
                         f'fill="rgb({red},60,{blue})" fill-opacity="0.6"/>')  # fmt: skip
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="0" y2="{height}" stroke="#999"/>')
    parts.append("</svg>")
    return "".join(parts)


def _shap_sections(
    explanation: Mapping[str, Any],
    local_values: np.ndarray | None,
    records: np.ndarray | None,
    names: Sequence[str],
) -> str:
    out = []
    for label, entry in explanation.get("kernel_shap", {}).items():
        global_values = entry.get("global_shap_values", {})
        items = sorted(global_values.items(), key=lambda kv: -abs(kv[1]))
        method = entry.get("method", "kernel_shap")
        out.append(
            f'<section id="global-shap"><h2>Global SHAP values ({_esc(label)})</h2>'
            f"<p>Method: {_esc(method)}; expected value {_fmt(entry.get('expected_value'))}"
            "</p>" + _bar_chart([(k, float(v)) for k, v in items], {}) + "</section>"
        )
    if local_values is not None and records is not None and local_values.size:
        out.append(
            '<section id="shap-summary"><h2>SHAP summary</h2><p>Each dot is a record: its '
            "SHAP value for the feature (x), coloured by the feature's value (blue low, red "
            "high).</p>" + _beeswarm(local_values, records, names) + "</section>"
        )
    return "".join(out)


def render(
    analysis: Mapping[str, Any],
    *,
    title: str,
    thresholds: Mapping[str, float] | None = None,
    local_values: np.ndarray | None = None,
    records: np.ndarray | None = None,
    feature_names: Sequence[str] = (),
) -> str:
    body = []
    if any(k in analysis for k in ("pre_training_bias_metrics", "post_training_bias_metrics")):
        body.append(_bias_section(analysis, thresholds or {}))
    if "explanations" in analysis:
        body.append(_shap_sections(analysis["explanations"], local_values, records, feature_names))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_esc(title)}</h1>{''.join(body)}</body></html>\n"
    )
