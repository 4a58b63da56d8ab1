"""What ``dfer predict`` writes per input (``X.json``, ``X.csv``, ``X.png`` in ``--out``)
and the line it prints."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from dfer.errors import DataError
from dfer.io import claim_folder, write_text_atomic

__all__ = ["claim_output_folder", "write_outputs", "timeline_steps", "summary_line"]


def _is_predict_report(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"input", "windows", "summary", "outputs"} <= doc.keys()


def claim_output_folder(out_dir: Path, create: bool = True) -> Path:
    """:func:`dfer.io.claim_folder` for --out; one written before dfer marked its folders
    holds a report of dfer predict."""
    return claim_folder(out_dir, "predictions", "dfer predict",
                        lambda d: any(_is_predict_report(p) for p in d.glob("*.json")), create=create)


def write_outputs(report: dict, out_dir: Path, name: str, plot: bool = True) -> dict[str, Path]:
    """Write ``name.json``, ``name.csv`` and (videos, ``plot``) ``name.png`` into ``out_dir``.

    Outputs of an earlier ``dfer predict`` (its ``name.json`` says so) are replaced; a file
    of those names that dfer did not write is left alone and the input fails with one line.
    The JSON goes first, so a run killed halfway leaves files a rerun knows as its own.
    """
    claim_output_folder(out_dir)
    paths = {"json": out_dir / f"{name}.json", "csv": out_dir / f"{name}.csv"}
    will_plot = plot and report["kind"] == "video" and bool(report["windows"])
    if will_plot:
        paths["png"] = out_dir / f"{name}.png"
    existing = [p for p in (paths["json"], paths["csv"], out_dir / f"{name}.png") if p.exists() or p.is_symlink()]
    if existing and not _is_predict_report(paths["json"]):
        raise DataError(f"{existing[0]} exists and was not written by dfer predict; left as it is (move it, or "
                        f"give another --out)")
    write_text_atomic(paths["json"], json.dumps({**report, "outputs": {k: str(v) for k, v in paths.items()}},
                                          indent=1, allow_nan=False) + "\n")
    classes = report["classes"]

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["start_frame", "end_frame", "start_s", "end_s", "face_found", "top", *classes])
    for w in report["windows"]:
        p = w["probabilities"]
        writer.writerow([w["start_frame"], w["end_frame"], f"{w['start_s']:.4f}", f"{w['end_s']:.4f}",
                         f"{w['face_found']:.4f}", w["top"] or "",
                         *([f"{x:.6f}" for x in p] if p is not None else [""] * len(classes))])
    write_text_atomic(paths["csv"], buf.getvalue())

    if will_plot:
        from dfer.plots import plot_timeline

        times, probs = timeline_steps(report["windows"], len(classes))
        s = report["summary"]
        title = (f"{Path(report['input']).name}: dominant {s['dominant']} ({s['dominant_probability']:.2f})"
                 if s.get("dominant") else f"{Path(report['input']).name}: no prediction")
        plot_timeline(times, probs, classes, paths["png"],
                      no_face=np.array(report["no_face_spans_s"], np.float64).reshape(-1, 2), title=title)
    return paths


def timeline_steps(windows: list[dict], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows as a piecewise-constant timeline for :func:`dfer.plots.plot_timeline`.

    Window ``w`` holds from the midpoint between its centre and the previous window's
    centre to the midpoint with the next one (the first from its start, the last to its
    end); with the default stride (no overlap) these are exactly the windows' spans. Each
    piece is drawn as two points (its start and just before its end), so one window alone
    is still a visible band.

    Returns:
        ``(times (2W,), probs (2W, C))``; windows without a prediction are NaN rows.
    """
    centres = np.array([(w["start_s"] + w["end_s"]) / 2 for w in windows], np.float64)
    bounds = np.concatenate([[windows[0]["start_s"]], (centres[1:] + centres[:-1]) / 2, [windows[-1]["end_s"]]])
    times, probs = [], []
    for w, (a, b) in zip(windows, zip(bounds[:-1], bounds[1:])):
        p = w["probabilities"] if w["probabilities"] is not None else [np.nan] * num_classes
        eps = 1e-6 * max(b - a, 1e-3)
        times += [a, b - eps]
        probs += [p, p]
    return np.asarray(times, np.float64), np.asarray(probs, np.float64)


def summary_line(report: dict, paths: dict[str, Path] | None = None) -> str:
    """The one-line summary printed per input."""
    name = Path(report["input"]).name
    if report["status"] != "ok":
        return f"{name}: {report['error']}; nothing written"
    s = report["summary"]
    if s["dominant"] is None:
        result = f"no window with a face in >= {report['settings']['min_face']:.0%} of its frames"
    else:
        result = f"dominant {s['dominant']} ({s['dominant_probability']:.2f})"
    if report["kind"] == "image":
        line = f"{name}: still image, {result}"
    else:
        line = (f"{name}: {report['frames']} frames, {report['duration_s']:.1f} s, {s['windows']} windows, {result}, "
                f"faces in {s['face_frame_fraction']:.0%} of frames, {s['realtime_factor']:.1f}x real time")
    if paths:
        stem = paths["json"].with_suffix("")
        line += f" -> {stem}.{{{','.join(paths)}}}"
    return line


def _output_names(paths: list[Path]) -> list[str]:
    """Output file stems: the input's stem, with its suffix appended when stems clash."""
    stems = [p.stem for p in paths]
    names, taken = [], set()
    for p, stem in zip(paths, stems):
        name = stem if stems.count(stem) == 1 else f"{stem}_{p.suffix.lstrip('.').lower()}"
        base, k = name, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        names.append(name)
    return names
