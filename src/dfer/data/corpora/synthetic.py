"""A synthetic corpus in DFEW's own on-disk layout, with known ground truth.
Kept as one module: the clips drawn and the files written about them share one ground truth.

The MIDAS paper (Kawamura et al., Sec. 4.1 and 5.4) trains on DFEW, whose clips carry the
votes of ten annotators, so a clip's soft label ``q_i = (1/S) sum_s v_i^(s)`` (Eq. 9) is a
distribution over seven classes. Fig. 4 shows the class imbalance (many happy and neutral
clips, few disgust and fear); Fig. 5 shows which emotions coexist in the votes (neutral
with every class, happy with few, angry with disgust, and sad, surprise and fear with one
another). This module draws clips whose faces express a known *mixture* of the seven
classes, lets simulated annotators vote on them, and writes everything exactly as DFEW lies
on disk, so the whole toolkit (adapters, training, MIDAS mixing, evaluation) can be run
and tested without the real corpus::

    ROOT/
      Clip/clip_224x224/00001/00001.jpg ...      frames, cfg.size x cfg.size, JPEG q=90
      EmoLabel_DataSplit/train(single-labeled)/set_1.csv .. set_5.csv   video_name,label
      EmoLabel_DataSplit/test(single-labeled)/set_1.csv .. set_5.csv    (label 1..7)
      Annotation/annotation.xlsx     1happy,2sad,3neutral,4angry,5surprise,6disgust,7fear,order,label
      synthetic_truth.csv            the ground truth the real corpus does not have
      synthetic_config.json          the SynthConfig that wrote the corpus

Frames are named ``00001.jpg, 00002.jpg, ...`` (five digits, from 1); readers must sort
them naturally since DFEW's ``clip_224x224_16f`` uses ``1.jpg .. 16.jpg``. Clip ids are
five-digit strings from ``00001``, ``order`` in the sheet is the same id as an integer.

How a clip is made
------------------
* Expression: each class c has a displacement ``D_c`` of eight face parameters (mouth
  curvature, openness, width, brow height, brow tilt, eye openness, nose wrinkle, lip
  asymmetry; neutral is the zero vector). A clip has a mixture ``w`` (7 weights summing to
  1: a principal class drawn from a DFEW-like prior plus a secondary one drawn from a
  Fig. 5-like coexistence table) and an intensity ``a``; the face at frame t shows
  ``a * (w_p e_p(t) D_p + w_s e_s(t) D_s)`` where ``e_p`` is an onset-apex-offset envelope
  and ``e_s`` either follows it or rises late (a second emotion appearing).
* Nuisances: head shift, scale and roll (with drift), identity (face shape, skin, feature
  spacing), a lighting gradient, sensor noise and, for some clips, an occluding rectangle.
* Annotators: each of S annotators sees ``a * w`` blurred by confusions (angry <-> disgust,
  sad <-> surprise <-> fear), a bias towards neutral that grows as intensity falls, and
  their own noise, and votes for the arg-max. Ties in the vote count get label 0 in the
  sheet and are in no split, as in DFEW.
* ``hard_fraction`` of the clips are made deliberately ambiguous (low intensity or a
  near-equal two-class mixture); ``label_noise`` of the single-labelled clips get a wrong
  hard label (in the CSVs and the sheet's ``label`` column alike, votes untouched): a class
  that is neither the majority vote nor one the clip shows (its principal or secondary
  expression). Both are recorded per clip in ``synthetic_truth.csv``.

Randomness: every clip draws from its own generator seeded by ``(seed, clip index)``, so
the corpus is byte-identical for one seed whatever ``workers`` is.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import re
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dfer.emotions import BASIC7
from dfer.errors import ConfigError, DataError

#: DFEW's annotation sheet header (vote columns in DFEW class order, then order, label).
XLSX_HEADER: tuple[str, ...] = (
    "1happy", "2sad", "3neutral", "4angry", "5surprise", "6disgust", "7fear", "order", "label",
)
CSV_HEADER: tuple[str, str] = ("video_name", "label")
TRAIN_DIR = "EmoLabel_DataSplit/train(single-labeled)"
TEST_DIR = "EmoLabel_DataSplit/test(single-labeled)"
FRAMES_DIR = "Clip/clip_224x224"
ANNOTATION = "Annotation/annotation.xlsx"
TRUTH_FILE = "synthetic_truth.csv"
CONFIG_FILE = "synthetic_config.json"
#: written to CONFIG_FILE as ``generator``: raised whenever the same SynthConfig draws another
#: corpus (2: corrupted labels never name an expression the clip shows; a file without the
#: key is from generator 1)
GENERATOR = 2

#: Class prior of the principal emotion, shaped like DFEW's Fig. 4 (happy 21 %, sad 16 %,
#: neutral 23 %, angry 19 %, surprise 13 %, disgust 1.2 %, fear 8 % of its single-labelled
#: clips). Disgust is raised to 4 % so that a corpus of a few hundred clips still holds
#: enough of it for every fold to see some.
CLASS_PRIOR = np.array([0.21, 0.16, 0.22, 0.18, 0.12, 0.04, 0.07])
CLASS_PRIOR = CLASS_PRIOR / CLASS_PRIOR.sum()

#: Row p: probability that class c is the secondary emotion of a clip whose principal
#: emotion is p (after Fig. 5: neutral coexists with all, happy with little, angry with
#: disgust, sad with surprise and fear).
COEXIST = np.array([
    # happy sad  neutral angry surprise disgust fear
    [0.00, 0.04, 0.80, 0.03, 0.10, 0.01, 0.02],  # happy
    [0.03, 0.00, 0.40, 0.10, 0.12, 0.05, 0.30],  # sad
    [0.20, 0.30, 0.00, 0.20, 0.12, 0.08, 0.10],  # neutral
    [0.02, 0.10, 0.35, 0.00, 0.05, 0.40, 0.08],  # angry
    [0.12, 0.13, 0.30, 0.05, 0.00, 0.02, 0.38],  # surprise
    [0.02, 0.12, 0.30, 0.46, 0.02, 0.00, 0.08],  # disgust
    [0.02, 0.28, 0.25, 0.05, 0.36, 0.04, 0.00],  # fear
])
COEXIST = COEXIST / COEXIST.sum(axis=1, keepdims=True)

#: Face-parameter displacement per class: mouth curve (+ smile), mouth open, mouth width,
#: brow height (+ raised), brow tilt (+ inner ends up), eye open (+ wide), nose wrinkle,
#: lip asymmetry (one corner raised). Angry/disgust share lowered, V-shaped brows; sad,
#: surprise and fear share raised inner brows / wide eyes, so they are confusable.
PARAMS = ("mouth_curve", "mouth_open", "mouth_width", "brow_height", "brow_tilt",
          "eye_open", "nose_wrinkle", "lip_asym")
DISPLACEMENT = np.array([
    [1.00, 0.35, 0.45, 0.10, 0.00, -0.45, 0.00, 0.00],   # happy
    [-0.90, 0.00, -0.25, -0.20, 1.00, -0.45, 0.00, 0.00],  # sad
    [0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00, 0.00],    # neutral
    [-0.35, 0.10, -0.20, -0.80, -1.00, 0.10, 0.25, 0.00],  # angry
    [0.00, 1.00, -0.45, 1.00, 0.15, 1.00, 0.00, 0.00],   # surprise
    [-0.55, 0.25, -0.05, -0.50, -0.45, -0.55, 1.00, 1.00],  # disgust
    [-0.35, 0.55, 0.55, 0.65, 0.85, 0.90, 0.00, 0.00],   # fear
])

#: Perception confusions of the annotators: angry <-> disgust and sad/surprise/fear.
_CONFUSE = np.eye(7)
for _a, _b, _e in ((3, 5, 0.18), (1, 6, 0.12), (1, 4, 0.06), (4, 6, 0.14)):
    _CONFUSE[_a, _a] -= _e
    _CONFUSE[_b, _b] -= _e
    _CONFUSE[_a, _b] += _e
    _CONFUSE[_b, _a] += _e

_NEUTRAL = BASIC7.index("neutral")
_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


@dataclass
class SynthConfig:
    """What :func:`write_synthetic_dfew` draws.

    Attributes:
        num_clips: clips in the corpus (ids 00001..num_clips).
        num_frames: frames per clip.
        size: frame side in pixels (square frames).
        seed: the one seed of the corpus; same seed -> byte-identical files.
        num_annotators: votes per clip (DFEW: 10).
        num_folds: test sets that partition the single-labelled clips (DFEW: 5).
        label_noise: fraction of single-labelled clips whose hard label is replaced by a
            wrong class, neither the majority vote nor an expression the clip shows (votes
            untouched); recorded in the truth file.
        hard_fraction: fraction of clips made deliberately ambiguous (low intensity or a
            near-equal two-class mixture); recorded in the truth file.
        nuisance: strength of everything that is not expression, in [0, 1]: head pose and
            its drift, the lighting gradient and gain, sensor noise and the chance of an
            occluder all scale with it (1: as described above; 0: a frontal, evenly lit,
            clean face on its background). Identity, expressions and votes do not change.
            Lower it to study label noise apart from appearance (benchmarks/rdfer_table.py).
        workers: processes rendering frames (the files do not depend on it).
    """

    num_clips: int = 600
    num_frames: int = 16
    size: int = 64
    seed: int = 0
    num_annotators: int = 10
    num_folds: int = 5
    label_noise: float = 0.0
    hard_fraction: float = 0.0
    nuisance: float = 1.0
    workers: int = 1

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field out of range."""
        checks = (
            ("num_clips", self.num_clips >= 1, ">= 1"),
            ("num_frames", self.num_frames >= 1, ">= 1"),
            ("size", 16 <= self.size <= 1024, "between 16 and 1024"),
            ("num_annotators", self.num_annotators >= 1, ">= 1"),
            ("num_folds", 2 <= self.num_folds <= 99, "between 2 and 99"),
            ("label_noise", 0.0 <= self.label_noise < 1.0, "in [0, 1)"),
            ("hard_fraction", 0.0 <= self.hard_fraction <= 1.0, "in [0, 1]"),
            ("nuisance", 0.0 <= self.nuisance <= 1.0, "in [0, 1]"),
            ("workers", self.workers >= 1, ">= 1"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"SynthConfig.{name} = {getattr(self, name)!r}, expected {expected}")


@dataclass
class _ClipSpec:
    """Everything drawn for one clip before rendering (truth + nuisances)."""

    index: int
    mixture: np.ndarray  # (7,) float64, sums to 1
    principal: int
    secondary: int
    intensity: float
    is_hard: bool
    late_secondary: bool
    apex: int
    votes: np.ndarray  # (7,) int64, sums to num_annotators


# ---------------------------------------------------------------------------- drawing
def _clip_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, stream])


def _envelope(T: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Onset -> apex -> offset of the principal emotion: (T,) float64 in [e0, 1], apex index.

    Every frame keeps some expression (e0 >= 0.35) so that any frame sampler sees the class.
    """
    if T == 1:
        return np.ones(1), 0
    t = np.arange(T, dtype=np.float64)
    apex = int(rng.integers(int(0.3 * (T - 1)), int(0.65 * (T - 1)) + 1))
    hold = int(rng.integers(1, max(2, T // 4) + 1))
    e0, e1 = rng.uniform(0.35, 0.6), rng.uniform(0.55, 0.9)
    rise = np.clip(t / max(apex, 1), 0, 1)
    rise = rise * rise * (3 - 2 * rise)
    env = e0 + (1 - e0) * rise
    after = t > apex + hold
    if after.any():
        frac = (t[after] - apex - hold) / max(T - 1 - apex - hold, 1)
        env[after] = 1 - (1 - e1) * frac
    return env, apex


def _draw_spec(cfg: SynthConfig, index: int, hard: bool) -> _ClipSpec:
    rng = _clip_rng(cfg.seed, index, 0)
    p = int(rng.choice(7, p=CLASS_PRIOR))
    s = int(rng.choice(7, p=COEXIST[p]))
    if hard and rng.random() < 0.5:
        # near-equal two-class mixture at ordinary intensity
        m = rng.uniform(0.38, 0.5)
        a = rng.uniform(0.7, 1.0)
    elif hard:
        # a subtle expression: the face stays close to neutral
        m = rng.uniform(0.0, 0.3)
        a = rng.uniform(0.2, 0.45)
    else:
        m = rng.beta(1.5, 3.0) * (0.3 if p == 0 else 0.65)
        a = rng.uniform(0.7, 1.0)
    w = np.zeros(7)
    w[p] += 1 - m
    w[s] += m
    _, apex = _envelope(cfg.num_frames, _clip_rng(cfg.seed, index, 1))
    late = bool(rng.random() < 0.35)
    # annotators: the clip's expression as seen through confusions and a neutral bias
    seen = (a * w) @ _CONFUSE
    seen[_NEUTRAL] += (1 - a) + 0.12
    bias = rng.normal(0, 0.04, size=(cfg.num_annotators, 7))  # each annotator's leanings
    noise = rng.normal(0, 0.2, size=(cfg.num_annotators, 7))
    votes_for = np.argmax(seen[None, :] + bias + noise, axis=1)
    votes = np.bincount(votes_for, minlength=7).astype(np.int64)
    return _ClipSpec(index, w, p, s, float(a), bool(hard), late, apex, votes)


def _face_params(spec: _ClipSpec, cfg: SynthConfig) -> np.ndarray:
    """(T, 8) face parameters over time: principal envelope + (maybe late) secondary."""
    env, _ = _envelope(cfg.num_frames, _clip_rng(cfg.seed, spec.index, 1))
    T = cfg.num_frames
    if spec.late_secondary and T > 1:
        r = np.clip((np.arange(T) - 0.3 * T) / (0.5 * T), 0, 1)
        env_s = r * r * (3 - 2 * r)
    else:
        env_s = env
    w = spec.mixture
    disp = spec.intensity * (w[spec.principal] * env[:, None] * DISPLACEMENT[spec.principal]
                             + (w[spec.secondary] * env_s[:, None] * DISPLACEMENT[spec.secondary]
                                if spec.secondary != spec.principal else 0.0))
    return disp


def _ellipse(cx, cy, rx, ry, n=20):
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _render_clip(args: tuple[SynthConfig, _ClipSpec, str]) -> None:
    """Render and write one clip's frames (JPEG, quality 90)."""
    cfg, spec, out_dir = args
    rng = _clip_rng(cfg.seed, spec.index, 2)
    T, S = cfg.num_frames, cfg.size
    SS = 2 * S  # draw at twice the size and downsample: cheap anti-aliasing
    params = _face_params(spec, cfg)

    # identity and pose of this clip
    tone = rng.uniform(0, 1)
    skin = (1 - tone) * np.array([105, 70, 50]) + tone * np.array([240, 205, 180]) + rng.normal(0, 8, 3)
    bg = rng.uniform(20, 230, size=3)
    feat = rng.uniform(15, 60, size=3)
    lips = np.array([rng.uniform(110, 170), rng.uniform(30, 70), rng.uniform(30, 70)])
    face_rx, face_ry = rng.uniform(0.31, 0.37), rng.uniform(0.40, 0.46)
    eye_dx, eye_y = rng.uniform(0.12, 0.16), rng.uniform(-0.10, -0.06)
    mouth_y, mouth_hw = rng.uniform(0.19, 0.24), rng.uniform(0.10, 0.13)
    brow_gap = rng.uniform(0.07, 0.10)
    roll0, scale0 = rng.normal(0, 0.12), rng.uniform(0.82, 1.08)
    shift0 = rng.normal(0, 0.035, size=2)
    drift = rng.normal(0, 0.02, size=3)  # roll, dx, dy change across the clip
    grad_dir = rng.uniform(0, 2 * np.pi)
    gain, slope = rng.uniform(0.65, 1.2), rng.uniform(0.0, 0.45)
    noise_sd = rng.uniform(2, 9)
    nu = cfg.nuisance
    if nu != 1.0:  # (at 1 the values stay bit-identical to the drawn ones)
        roll0, shift0, drift = nu * roll0, nu * shift0, nu * drift
        scale0 = 0.95 + nu * (scale0 - 0.95)
        gain, slope, noise_sd = 1.0 + nu * (gain - 1.0), nu * slope, nu * noise_sd
    occl = None
    if rng.random() < 0.25 * nu:
        w_, h_ = rng.uniform(0.2, 0.45, size=2)
        x_, y_ = rng.uniform(0, 1 - w_), rng.uniform(0, 1 - h_)
        occl = (x_, y_, w_, h_, rng.uniform(0, 255, size=3))

    yy, xx = np.mgrid[0:S, 0:S] / S - 0.5
    light = gain * (1 + slope * (xx * np.cos(grad_dir) + yy * np.sin(grad_dir)))[..., None]
    col = lambda c: tuple(int(v) for v in np.clip(c, 0, 255))  # noqa: E731

    for t in range(T):
        mc, mo, mw, bh, bt, eo, nw, la = params[t]
        u = t / max(T - 1, 1)
        roll = roll0 + drift[0] * u + nu * rng.normal(0, 0.01)
        c, s_ = np.cos(roll), np.sin(roll)
        rot = np.array([[c, -s_], [s_, c]]) * scale0
        off = shift0 + drift[1:] * u

        def px(pts):
            pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2) @ rot.T + off
            return [tuple(p) for p in ((pts + 0.5) * SS).tolist()]

        img = Image.new("RGB", (SS, SS), col(bg))
        d = ImageDraw.Draw(img)
        d.polygon(px(_ellipse(0, 0, face_rx, face_ry, 32)), fill=col(skin))
        lw = max(1, round(0.035 * SS))
        # eyes: openness scales the height; brows: height and inner-end tilt
        eye_h = 0.035 * (1 + 0.9 * eo)
        for sgn in (-1, 1):
            ex = sgn * eye_dx
            d.polygon(px(_ellipse(ex, eye_y, 0.055, max(eye_h, 0.006), 16)), fill=(245, 245, 245))
            d.polygon(px(_ellipse(ex, eye_y, 0.022, min(0.022, max(eye_h, 0.006)), 10)), fill=col(feat))
            by = eye_y - 0.075 - 0.05 * bh
            inner = (sgn * brow_gap * 0.7, by - 0.045 * bt)
            outer = (sgn * (eye_dx + 0.07), by + 0.02 * bt)
            d.line(px([inner, outer]), fill=col(feat), width=lw)
        # nose and its wrinkles (disgust, some anger)
        d.line(px([(0, eye_y + 0.03), (0.012, 0.10), (-0.02, 0.11)]), fill=col(skin * 0.7), width=max(1, lw // 2))
        if nw > 0.05:
            wc = col(skin * (1 - 0.6 * min(nw, 1)))
            for k in range(3):
                y0 = eye_y + 0.02 + 0.025 * k
                d.line(px([(-0.045, y0), (0.045, y0)]), fill=wc, width=max(1, lw // 2))
        # mouth: upper lip curve y = y0 - curve * x^2, lower lip opened below it
        hw = mouth_hw * (1 + 0.35 * mw)
        xs = np.linspace(-hw, hw, 13)
        q = (xs / hw) ** 2
        upper = mouth_y - 0.07 * mc * q - 0.05 * la * q * (xs < 0)
        lower = upper + 0.012 + 0.11 * max(mo, 0) * (1 - q)
        poly = np.concatenate([np.stack([xs, upper], 1), np.stack([xs[::-1], lower[::-1]], 1)])
        d.polygon(px(poly), fill=col(lips if mo < 0.25 else lips * 0.45))

        img = img.reduce(2)
        arr = np.asarray(img, dtype=np.float32) * light
        arr += rng.normal(0, noise_sd, size=arr.shape).astype(np.float32)
        if occl is not None:
            x_, y_, w_, h_, oc = occl
            jit = 0.03 * u
            x0, y0 = int((x_ + jit) * S), int(y_ * S)
            arr[y0:y0 + int(h_ * S), x0:x0 + int(w_ * S)] = oc
        frame = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        frame.save(os.path.join(out_dir, f"{t + 1:05d}.jpg"), quality=90)


# ---------------------------------------------------------------------------- writing
def write_synthetic_dfew(root: str | os.PathLike, cfg: SynthConfig | None = None) -> Path:
    """Write a synthetic corpus in DFEW's layout (see the module docstring) under ``root``.

    Args:
        root: folder to create; it must not exist or be empty.
        cfg: what to draw; defaults to ``SynthConfig()``.

    Returns:
        ``root`` as a Path.

    Raises:
        ConfigError: a config field out of range.
        DataError: ``root`` exists and is not an empty folder.
    """
    cfg = cfg or SynthConfig()
    cfg.validate()
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root}: expected a new or empty folder for the synthetic corpus, found existing content")
    n = cfg.num_clips
    corpus_rng = np.random.default_rng([cfg.seed, 2**31 - 1])
    hard = np.zeros(n, bool)
    hard[corpus_rng.permutation(n)[: int(round(cfg.hard_fraction * n))]] = True
    specs = [_draw_spec(cfg, i, bool(hard[i])) for i in range(n)]

    votes = np.stack([s.votes for s in specs])
    top = votes.max(axis=1, keepdims=True)
    single = (votes == top).sum(axis=1) == 1
    vote_label = np.where(single, votes.argmax(axis=1), -1)  # 0-based, -1 = tie

    # label noise: a wrong hard label for an exact fraction of the single-labelled clips,
    # wrong in every sense: neither the annotators' choice nor a class the clip shows (its
    # principal or secondary expression), so that no corrupted label names what is on screen
    given = vote_label.copy()
    labelled = np.flatnonzero(single)
    corrupt = np.zeros(n, bool)
    k = int(round(cfg.label_noise * len(labelled)))
    for i in corpus_rng.permutation(labelled)[:k]:
        wrong = [c for c in range(7) if c != vote_label[i] and specs[i].mixture[c] <= 0]
        given[i] = wrong[int(corpus_rng.integers(len(wrong)))]
        corrupt[i] = True

    # folds stratified by given label: shuffle within a class, deal round-robin
    fold = np.zeros(n, np.int64)
    order = sorted(labelled.tolist(), key=lambda i: (given[i], corpus_rng.random()))
    start = int(corpus_rng.integers(cfg.num_folds))
    for j, i in enumerate(order):
        fold[i] = (start + j) % cfg.num_folds + 1

    ids = [f"{i + 1:05d}" for i in range(n)]
    frames_root = root / FRAMES_DIR
    for d in (frames_root, root / TRAIN_DIR, root / TEST_DIR, root / "Annotation"):
        d.mkdir(parents=True, exist_ok=True)
    jobs = []
    for spec, cid in zip(specs, ids):
        (frames_root / cid).mkdir()
        jobs.append((cfg, spec, str(frames_root / cid)))
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as ex:
            list(ex.map(_render_clip, jobs, chunksize=max(1, n // (4 * cfg.workers))))
    else:
        for job in jobs:
            _render_clip(job)

    for k in range(1, cfg.num_folds + 1):
        for sub, members in ((TEST_DIR, fold == k), (TRAIN_DIR, (fold > 0) & (fold != k))):
            with open(root / sub / f"set_{k}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(CSV_HEADER)
                for i in np.flatnonzero(members):
                    w.writerow((ids[i], int(given[i]) + 1))

    _write_annotation(root / ANNOTATION, votes, given, ids)
    _write_truth(root / TRUTH_FILE, specs, ids, vote_label, given, corrupt)
    with open(root / CONFIG_FILE, "w", encoding="utf-8") as f:
        json.dump({**dataclasses.asdict(cfg), "generator": GENERATOR}, f, indent=2, sort_keys=True)
        f.write("\n")
    return root


def _write_annotation(path: Path, votes: np.ndarray, given: np.ndarray, ids: list[str]) -> None:
    """DFEW's sheet with openpyxl; timestamps pinned so that the bytes depend on the data only."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(list(XLSX_HEADER))
    for v, g, cid in zip(votes, given, ids):
        ws.append([int(x) for x in v] + [int(cid), int(g) + 1])
    buf = io.BytesIO()
    wb.save(buf)
    # openpyxl stamps the save time into docProps/core.xml and into every zip entry
    stamp = b"2020-01-01T00:00:00Z"
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", lambda m: m.group(1) + stamp, data)
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME), data,
                         compress_type=zipfile.ZIP_DEFLATED)


def _write_truth(path: Path, specs, ids, vote_label, given, corrupt) -> None:
    """One row per clip; labels are class names (``""`` = none)."""
    name = lambda i: BASIC7[i] if i >= 0 else ""  # noqa: E731
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["video_name", *(f"mix_{c}" for c in BASIC7), "intensity", "is_hard", "label_corrupted",
                    "true_label", "secondary", "vote_label", "given_label", "apex_frame"])
        for s, cid, vl, g, c in zip(specs, ids, vote_label, given, corrupt):
            w.writerow([cid, *(f"{x:.4f}" for x in s.mixture), f"{s.intensity:.4f}", int(s.is_hard), int(c),
                        name(s.principal), name(s.secondary) if s.secondary != s.principal else "",
                        name(int(vl)), name(int(g)), s.apex])


def read_truth(root: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read ``synthetic_truth.csv`` back as columns.

    Returns:
        dict with ``video_name`` (str), ``mixture`` (N, 7) float64 in BASIC7 order,
        ``intensity`` float64, ``is_hard`` / ``label_corrupted`` bool, ``true_label``,
        ``vote_label``, ``given_label`` int64 0-based BASIC7 indices (-1 = none) and
        ``apex_frame`` int64 (0-based frame index).
    """
    path = Path(root) / TRUTH_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found (is {root} a synthetic corpus?)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    idx = lambda s: BASIC7.index(s) if s else -1  # noqa: E731
    return {
        "video_name": np.array([r["video_name"] for r in rows]),
        "mixture": np.array([[float(r[f"mix_{c}"]) for c in BASIC7] for r in rows]),
        "intensity": np.array([float(r["intensity"]) for r in rows]),
        "is_hard": np.array([r["is_hard"] == "1" for r in rows]),
        "label_corrupted": np.array([r["label_corrupted"] == "1" for r in rows]),
        "true_label": np.array([idx(r["true_label"]) for r in rows], dtype=np.int64),
        "vote_label": np.array([idx(r["vote_label"]) for r in rows], dtype=np.int64),
        "given_label": np.array([idx(r["given_label"]) for r in rows], dtype=np.int64),
        "apex_frame": np.array([int(r["apex_frame"]) for r in rows], dtype=np.int64),
    }


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SynthConfig()
    parser.add_argument("out", help="folder to create (must not exist or be empty)")
    parser.add_argument("--clips", type=int, default=d.num_clips, help="number of clips (default %(default)s)")
    parser.add_argument("--frames", type=int, default=d.num_frames, help="frames per clip (default %(default)s)")
    parser.add_argument("--size", type=int, default=d.size, help="frame side in pixels (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    parser.add_argument("--annotators", type=int, default=d.num_annotators, help="votes per clip (default %(default)s)")
    parser.add_argument("--label-noise", type=float, default=d.label_noise,
                        help="fraction of single-labelled clips given a wrong hard label (default %(default)s)")
    parser.add_argument("--hard-fraction", type=float, default=d.hard_fraction,
                        help="fraction of clips made ambiguous or subtle (default %(default)s)")
    parser.add_argument("--nuisance", type=float, default=d.nuisance,
                        help="strength of pose, lighting, sensor noise and occlusion in [0, 1] (default %(default)s)")
    parser.add_argument("--workers", type=int, default=d.workers, help="rendering processes (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    cfg = SynthConfig(num_clips=args.clips, num_frames=args.frames, size=args.size, seed=args.seed,
                      num_annotators=args.annotators, label_noise=args.label_noise,
                      hard_fraction=args.hard_fraction, nuisance=args.nuisance, workers=args.workers)
    t0 = time.perf_counter()
    root = write_synthetic_dfew(args.out, cfg)
    truth = read_truth(root)
    labelled = int((truth["vote_label"] >= 0).sum())
    counts = np.bincount(truth["given_label"][truth["given_label"] >= 0], minlength=7)
    dist = " ".join(f"{c}={k}" for c, k in zip(BASIC7, counts))
    print(f"dfer synth: wrote {cfg.num_clips} clips x {cfg.num_frames} frames at {cfg.size}px to {root} "
          f"({labelled} single-labelled in {cfg.num_folds} folds, {cfg.num_clips - labelled} ties; {dist}) "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0
