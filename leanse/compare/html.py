"""``report.html``: one self-contained file to open and listen (no network, nothing beside it).

The tables, the plots (PNG, base64 ``data:`` URIs) and, for a few files spread over the SNR bins,
an audio player per system -- noisy input, every system's output, the clean reference when known
-- each with its spectrogram (16-bit WAV, base64). A colleague opens the one file and listens.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf

from leanse.compare.data import bin_low

if TYPE_CHECKING:
    from leanse.compare.run import Comparison

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.sample { border-top: 2px solid #ddd; padding-top: 0.6em; margin-top: 1.2em; }
.track { display: inline-block; vertical-align: top; margin: 0.4em 1em 0.4em 0; width: 420px; }
.track img { width: 420px; display: block; }
audio { width: 420px; }
.note { color: #555; font-size: 0.9em; }
"""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def wav_bytes(wav: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV in memory (clipped to full scale, as any 16-bit file is)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(np.asarray(wav, np.float32), -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def spectrogram_png(wav: np.ndarray, rate: int, title: str) -> bytes:
    """The run reports' spectrogram (:func:`leanse.report.spectrogram_figure`) as PNG bytes."""
    from leanse.report import spectrogram_figure

    buffer = io.BytesIO()
    spectrogram_figure({title: np.asarray(wav, np.float64)}, rate, buffer)
    return buffer.getvalue()


def html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>(no rows)</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def track_html(label: str, wav: np.ndarray, rate: int, caption: str = "") -> str:
    audio = data_uri(wav_bytes(wav, rate), "audio/wav")
    image = data_uri(spectrogram_png(wav, rate, label), "image/png")
    return (f'<div class="track"><b>{html.escape(label)}</b> <span class="note">{html.escape(caption)}</span>'
            f'<br><audio controls preload="auto" data-system="{html.escape(label)}" src="{audio}"></audio>'
            f'<img alt="spectrogram of {html.escape(label)}" src="{image}"></div>')


def pick_samples(comparison: "Comparison", count: int) -> list[int]:
    """Indices of ``count`` files spread evenly over the SNR bins (lowest to highest)."""
    source = comparison.data
    if count <= 0 or not comparison.results:
        return []
    bins = {row["id"]: row.get("snr_bin", "") for row in comparison.results[0].result.rows}
    order = sorted(range(len(source.ids)), key=lambda i: (bin_low(bins.get(source.ids[i], "")), source.ids[i]))
    if len(order) <= count:
        return order
    return [order[round(k * (len(order) - 1) / (count - 1))] for k in range(count)] if count > 1 else [order[0]]


def write_report_html(comparison: "Comparison", samples: int = 4) -> Path:
    from leanse.compare.run import GROUP_BY, cost_table, quality_table, shown_metrics

    metrics = shown_metrics(comparison)
    overall = comparison.overall_rows()
    data = comparison.data.description
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>leanse compare</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>leanse compare</h1>",
        f"<p class='note'>{html.escape(data['kind'])} <code>{html.escape(data['path'])}</code>, "
        f"{data['files']} files. Everything on this page is inside this one file.</p>",
        "<h2>Quality</h2>", html_table(quality_table(overall, ["system", "n"], metrics)),
        "<h2>Cost</h2>", html_table(cost_table(overall)),
    ]
    for key in GROUP_BY:
        rows = comparison.group_rows(key)
        if rows:
            parts += [f"<h2>By {html.escape(key)}</h2>", html_table(quality_table(rows, [key, "system", "n"], metrics))]
    for name, path in comparison.files.items():
        if name.endswith(".png"):
            parts.append(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' style='max-width:100%' "
                         f"src='{data_uri(Path(path).read_bytes(), 'image/png')}'>")
    parts.append("<h2>Listen</h2>")
    rows_by_system = {r.label: {row["id"]: row for row in r.result.rows} for r in comparison.results}
    for index in pick_samples(comparison, samples):
        mixture = comparison.data.load(index)
        rate = mixture.sample_rate
        meta = ", ".join(f"{k} {mixture.meta[k]}" for k in ("snr_bin", "noise_type", "speaker") if mixture.meta.get(k))
        parts.append(f"<div class='sample'><h3>{html.escape(mixture.id)}</h3><p class='note'>{html.escape(meta)}</p>")
        parts.append(track_html("noisy input", mixture.noisy, rate))
        for result in comparison.results:
            row = rows_by_system[result.label].get(mixture.id, {})
            caption = ", ".join(f"{title} {row[key]:.2f}" for key, title in (("si_sdri", "SI-SDRi"), ("pesq", "PESQ"),
                                                                            ("dnsmos_ovrl", "OVRL"))
                                if row.get(key) is not None)
            parts.append(track_html(result.label, result.system.enhance(mixture.noisy), rate, caption))
        if mixture.clean is not None:
            parts.append(track_html("clean reference", mixture.clean, rate))
        parts.append("</div>")
    if comparison.notes:
        parts += ["<h2>Notes</h2><ul>", *(f"<li>{html.escape(n)}</li>" for n in comparison.notes), "</ul>"]
    parts.append("</body></html>")
    path = comparison.out / "report.html"
    from leanse.compare.run import write_text

    write_text(path, "\n".join(parts))
    return path
