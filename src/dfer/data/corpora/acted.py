"""Acted-emotion corpora whose labels live in their file names: RAVDESS (Livingstone &
Russo, *The Ryerson Audio-Visual Database of Emotional Speech and Song*, PLoS ONE 2018),
CREMA-D (Cao et al., *Crowd-sourced Emotional Multimodal Actors Dataset*, IEEE TAC 2014),
the Javanese video emotion corpus (Ardy Seto, github 2black0/video-emotion-recognition-javanese),
or any corpus named by a pattern of your own. Kept as one module: these corpora share one
reader of file names and its options.

An actor is asked to show an emotion and the clip is named after it, e.g. RAVDESS's
``01-01-03-02-01-01-12.mp4`` (third field: emotion code 03, happy; last: actor 12). One
reader serves them all: a regular expression with named groups is matched against every
clip's name (without its extension) and a table of codes turns the ``emotion`` group into
a class, by emotion *name* (:mod:`dfer.emotions`), never by position. The kinds
``javanese``, ``ravdess`` and ``cremad`` are that reader with a :class:`Preset` (the pattern,
the codes and the corpus's own defaults); ``acted`` is the same reader with yours.

- Clips are video files (:data:`dfer.data.table.VIDEO_EXTENSIONS`) and frame folders (a
  sub-folder whose name matches, as ``dfer preprocess`` writes them), anywhere under the
  root. Hidden files are passed over; other files are listed in ``meta["ignored"]``.
- The ``actor`` group, when the pattern has one, is the clip's ``group``: folds and
  held-out validation clips are cut by person, never through one (``folds=k``).
- Groups other than ``emotion`` and ``actor`` are kept in ``meta["fields"]``
  (``{group: {clip id: value}}``).
- A code mapped to ``drop`` (or null) leaves its clips out, counted in ``meta["dropped"]``;
  clips left out by ``select`` are counted in ``meta["not_selected"]``.
- A name that does not match, or an emotion code the codes lack, is one
  :class:`~dfer.errors.DataError` naming the file (``on_bad_name="error"``), or is left
  out and listed with its reason in ``meta["skipped"]`` (``on_bad_name="skip"``).

Codes that are numbers match by value: ``1``, ``"1"`` and ``"01"`` are one code (a YAML
file reads ``01:`` as the number 1).

CREMA-D's crowd votes (``processedResults/tabulatedVotes.csv``: per clip and condition the
counts of ten-odd raters for anger, disgust, fear, happy, neutral, sad) become the clips'
``votes``, i.e. soft labels; the acted emotion stays the hard ``label``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from dfer.data.corpora.columns import read_columns
from dfer.data.table import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ClipKind, ClipTable
from dfer.emotions import BASIC7, canonical, resolve_classes
from dfer.errors import ConfigError, DataError


@dataclass(frozen=True)
class Preset:
    """How one corpus names its clips.

    Attributes:
        pattern: regular expression matched whole against a clip's name without its
            extension; a named group ``emotion`` is required, ``actor`` optional.
        codes: emotion code -> emotion name, or None to leave those clips out.
        layout: the naming scheme in words, for messages.
        select: group -> the values kept (other clips are left out and counted).
    """

    pattern: str
    codes: Mapping[str, str | None]
    layout: str
    select: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


#: RAVDESS's code for calm, which dfer.emotions has no class for: load_ravdess's calm= sets it
RAVDESS_CALM = "02"
PRESETS: dict[str, Preset] = {
    "javanese": Preset(
        pattern=r"(?P<actor>\d{2})-(?P<sentence>\d{2})-(?P<emotion>\d{2})_(?P<take>\d{2})",
        codes={"01": "neutral", "02": "sad", "03": "happy", "04": "surprise", "05": "fear", "06": "angry"},
        layout="AA-SS-EE_RR (actor, sentence, emotion, take: two digits each)",
    ),
    "ravdess": Preset(
        pattern=r"(?P<modality>0[1-3])-(?P<channel>0[12])-(?P<emotion>\d{2})-(?P<intensity>0[12])"
                r"-(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d{2})",
        codes={"01": "neutral", RAVDESS_CALM: "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
               "07": "disgust", "08": "surprised"},
        layout="MM-VC-EE-II-SS-RR-AA (modality 01-03, vocal channel 01-02, emotion, intensity 01-02, "
               "statement 01-02, repetition 01-02, actor)",
        select={"modality": ("01", "02")},
    ),
    "cremad": Preset(
        pattern=r"(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>LO|MD|HI|XX)",
        codes={"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"},
        layout="AAAA_SSS_EEE_LL (actor, sentence, emotion ANG DIS FEA HAP NEU SAD, level LO MD HI XX)",
    ),
}

CALM = ("neutral", "drop", "keep")
#: CREMA-D's vote columns and the emotions they count
CREMAD_VOTES = {"A": "angry", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}
#: first digit of a tabulatedVotes.csv row id -> rating condition
CREMAD_CONDITIONS = {"voice": "1", "face": "2", "audiovisual": "3"}
ON_BAD_NAME = ("error", "skip")


# ---------------------------------------------------------------------------- the reader
def load_acted(
    root: str | os.PathLike,
    *,
    pattern: str,
    codes: str | Mapping[str, str | None],
    classes: str | tuple[str, ...] = BASIC7,
    folds: int = 0,
    on_bad_name: str = "error",
    select: str | Mapping[str, object] | None = None,
    name: str = "acted",
) -> ClipTable:
    """Read clips labelled by their names, under ``root`` (recursively).

    Args:
        root: the corpus folder.
        pattern: regular expression with named groups, matched whole against each clip's
            name without extension: ``emotion`` (required), ``actor`` (optional: the clip's
            group), any others (kept in ``meta["fields"]``).
        codes: emotion code -> emotion name (any synonym dfer knows) or ``drop``/None; a
            mapping or a string ``"01=neutral,02=sad,03=drop"``.
        classes: target class set; every kept code's emotion must be one of them.
        folds: 0 = none; k >= 2 cuts the actors (sorted) into k contiguous runs of nearly
            equal size and gives each run's clips fold 1..k, so no actor spans two folds.
        on_bad_name: ``error`` (a name that does not match, or an unknown code, stops with
            one line naming the file) or ``skip`` (listed in ``meta["skipped"]``).
        select: group -> values to keep, e.g. ``{"modality": ["01", "02"]}`` or
            ``"modality=01|02,channel=01"``; other clips are left out and counted.
        name: the table's name.

    Returns:
        ClipTable: ids are paths relative to ``root`` (``Actor_01/01-01-03-02-01-01-01.mp4``),
        hard labels, ``group`` the actor, ``num_frames`` 0 (the disk check fills it in).

    Raises:
        ConfigError: a bad pattern, code table, selection or option.
        DataError: naming the file, for a name or code that does not fit (with
            ``on_bad_name="error"``), or when the folder holds no clip.
    """
    compile_pattern(pattern)  # a bad pattern is reported before the codes
    preset = Preset(pattern, code_table(codes), layout=f"the pattern {pattern}", select=parse_select(select))
    return _read(root, preset, classes=classes, folds=folds, on_bad_name=on_bad_name, name=name)


def load_javanese(
    root: str | os.PathLike,
    *,
    classes: str | tuple[str, ...] = BASIC7,
    folds: int = 0,
    on_bad_name: str = "error",
    codes: str | Mapping[str, str | None] | None = None,
) -> ClipTable:
    """The Javanese acted-emotion videos, ``AA-SS-EE_RR.mp4`` (see :data:`PRESETS`).

    ``codes`` changes single codes of the preset (``"04=drop"``); the other options are
    :func:`load_acted`'s.
    """
    return _preset("javanese", root, classes=classes, folds=folds, on_bad_name=on_bad_name, codes=codes)


def load_ravdess(
    root: str | os.PathLike,
    *,
    classes: str | tuple[str, ...] = BASIC7,
    folds: int = 0,
    on_bad_name: str = "error",
    codes: str | Mapping[str, str | None] | None = None,
    modalities: str | int = "01,02",
    calm: str = "neutral",
) -> ClipTable:
    """RAVDESS, ``MM-VC-EE-II-SS-RR-AA.mp4`` in ``Actor_NN/`` folders (see :data:`PRESETS`).

    Args:
        modalities: which of ``01`` (audio-video) and ``02`` (video only) to keep, e.g.
            ``"02"``; clips of the other are left out and counted in ``meta["not_selected"]``.
            A recording present as both is read once, from its video-only file
            (:func:`one_file_per_recording`).
            Audio-only recordings (03) have no face; RAVDESS ships them as ``.wav``, which
            are listed in ``meta["ignored"]``.
        calm: ``neutral`` (calm clips count as neutral), ``drop`` (left out), ``keep`` (a
            class of its own, for a class set holding calm).
        Other options as :func:`load_acted`'s.
    """
    if not isinstance(calm, str) or calm not in CALM:
        raise ConfigError(f"ravdess option calm must be one of {', '.join(CALM)}, got {calm!r}")
    if calm == "keep":
        try:
            canonical("calm")
        except DataError:
            raise ConfigError("ravdess calm=keep: dfer.emotions has no calm class, so no class set can hold "
                              "it; use calm=neutral (calm clips count as neutral) or calm=drop") from None
    calm_code = {RAVDESS_CALM: {"neutral": "neutral", "drop": None, "keep": "calm"}[calm]}
    keep = _values("modalities", modalities)
    for m in keep:
        if _key(m) not in (1, 2):
            raise ConfigError(f"ravdess option modalities: {m!r} unknown; expected 01 (audio-video) and/or 02 "
                              f"(video only); 03 is audio only, without a face")
    table = _preset("ravdess", root, classes=classes, folds=folds, on_bad_name=on_bad_name,
                    codes=_merge(calm_code, codes), select={"modality": keep})
    return one_file_per_recording(table)


def one_file_per_recording(table: ClipTable) -> ClipTable:
    """RAVDESS ships each recording twice, audio-video (01) and video only (02), with the same
    frames: keep one file per recording (the video-only one), so no clip counts twice; the
    files left out are counted in ``meta["same_recording"]``."""
    names = [PurePosixPath(c).name for c in table.clip_id]
    recordings = [f"{PurePosixPath(c).parent}/{n[2:]}" for c, n in zip(table.clip_id, names)]
    video_only = {r for r, n in zip(recordings, names) if n.startswith("02")}
    keep = np.array([n.startswith("02") or r not in video_only for r, n in zip(recordings, names)], bool)
    if keep.all():
        return table
    return replace(table.take(keep), meta={**table.meta, "same_recording": int((~keep).sum())})


def load_cremad(
    root: str | os.PathLike,
    *,
    classes: str | tuple[str, ...] = BASIC7,
    folds: int = 0,
    on_bad_name: str = "error",
    codes: str | Mapping[str, str | None] | None = None,
    votes: str | None = None,
    vote_condition: str = "face",
) -> ClipTable:
    """CREMA-D, ``AAAA_SSS_EEE_LL.flv`` (see :data:`PRESETS`), with its crowd votes.

    Args:
        votes: CREMA-D's ``processedResults/tabulatedVotes.csv``; its counts for the chosen
            condition become the clips' votes (soft labels). Unset: the corpus's own table
            when it lies beside the clips (a clone of CREMA-D); ``off`` (or no table found):
            hard labels only.
        vote_condition: ``face`` (video without sound; row ids starting with 2), ``voice``
            (1) or ``audiovisual`` (3).
        Other options as :func:`load_acted`'s.

    Raises:
        DataError: naming the vote file and line (or the clip): see :func:`read_cremad_votes`;
            a clip without a row of the chosen condition.
    """
    if not isinstance(vote_condition, str) or vote_condition not in CREMAD_CONDITIONS:
        raise ConfigError(f"cremad option vote_condition must be one of {', '.join(CREMAD_CONDITIONS)}, "
                          f"got {vote_condition!r}")
    table = _preset("cremad", root, classes=classes, folds=folds, on_bad_name=on_bad_name, codes=codes)
    path = _cremad_votes_path(Path(root), votes)
    if path is None:
        return table
    return _attach_cremad_votes(table, path, vote_condition)


def _cremad_votes_path(root: Path, votes: str | None) -> Path | None:
    """The vote table to read: ``votes`` (a relative path is looked up under ``root`` first,
    then the working folder); unset, CREMA-D's own ``processedResults/tabulatedVotes.csv``
    beside the clips (``root`` the clone of the corpus, or its ``VideoFlash``); ``off``:
    none."""
    if votes is not None:
        if votes.strip().lower() == "off":
            return None
        p = Path(votes)
        return root / p if not p.is_absolute() and (root / p).is_file() else p
    for folder in (root, root.parent):
        found = folder / "processedResults" / "tabulatedVotes.csv"
        if found.is_file():
            return found
    return None


def _preset(kind: str, root, *, codes, select=None, **options) -> ClipTable:
    p = PRESETS[kind]
    p = replace(p, codes=_merge(p.codes, codes), select=parse_select(select) if select else p.select)
    return _read(root, p, name=kind, **options)


def _read(root, preset: Preset, *, classes, folds: int, on_bad_name: str, name: str) -> ClipTable:
    root = Path(root)
    classes = resolve_classes(classes)
    regex = compile_pattern(preset.pattern)
    codes = code_table(preset.codes)
    label_of = class_of_code(codes, classes)
    select = {g: {_key(v) for v in values} for g, values in preset.select.items()}
    missing = sorted(set(select) - set(regex.groupindex))
    if missing:
        raise ConfigError(f"select names {missing}, which the pattern {preset.pattern} has no group for")
    if on_bad_name not in ON_BAD_NAME:
        raise ConfigError(f"option on_bad_name must be error or skip, got {on_bad_name!r}")
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 0 or folds == 1 or folds > 127:
        raise ConfigError(f"option folds must be 0 (none) or a number of folds 2..127, got {folds!r}")
    if folds and "actor" not in regex.groupindex:
        raise ConfigError(f"folds={folds} cuts folds by actor, but the pattern {preset.pattern} has no "
                          f"(?P<actor>...) group")
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    found, ignored = scan(root, regex)
    if not found:
        raise DataError(f"{root}: no clip found (video files {' '.join(VIDEO_EXTENSIONS)}, or frame folders "
                        f"named like the clips, anywhere below it)")
    extra = [g for g in regex.groupindex if g not in ("emotion", "actor")]
    ids, sources, kinds, labels, actors = [], [], [], [], []
    fields: dict[str, dict[str, str]] = {g: {} for g in extra}
    skipped: list[dict[str, str]] = []
    dropped: Counter = Counter()
    not_selected: Counter = Counter()
    known = ", ".join(sorted(str(k) for k in preset.codes))
    for path, kind, stem in found:
        what = "folder name" if kind == ClipKind.FRAMES else "file name"
        m = regex.fullmatch(stem)
        if m is None:
            reason = f"{what} {stem!r} does not match {preset.layout}"
        elif (out := next((g for g, allowed in select.items() if _key(m[g]) not in allowed), None)) is not None:
            not_selected[f"{out}={m[out]}"] += 1
            continue
        elif (k := label_of.get(_key(m["emotion"]))) is None:
            reason = f"emotion code {m['emotion']!r} in the {what} is not one of the codes {known}"
        elif k < 0:
            dropped[m["emotion"]] += 1
            continue
        else:
            cid = path.relative_to(root).as_posix()
            ids.append(cid)
            sources.append(os.path.abspath(path))
            kinds.append(kind)
            labels.append(k)
            actors.append(m.groupdict().get("actor") or "")
            for g in extra:
                fields[g][cid] = m[g] or ""
            continue
        if on_bad_name == "error":
            raise DataError(f"{path}: {reason} (on_bad_name=skip leaves such clips out)")
        skipped.append({"path": str(path), "reason": reason})
    meta = {"root": str(root), "pattern": preset.pattern, "codes": codes,
            "ignored": ignored, "skipped": skipped, "dropped": dict(dropped), "not_selected": dict(not_selected),
            "fields": fields}
    if "actor" in regex.groupindex:
        meta["group_kind"] = "actor"
    if not ids:
        left = {"skipped": len(skipped), "dropped": sum(dropped.values()), "not selected": sum(not_selected.values())}
        raise DataError(f"{root}: none of its {len(found)} clips is left ("
                        + ", ".join(f"{v} {k}" for k, v in left.items() if v) + ")")
    group = np.asarray(actors, dtype=str)
    return ClipTable.build(classes, ids, sources, kind=np.asarray(kinds, np.uint8), label=labels, group=group,
                           fold=actor_folds(group, folds) if folds else None, name=name, meta=meta)


def scan(root: Path, regex: re.Pattern) -> tuple[list[tuple[Path, ClipKind, str]], list[str]]:
    """Clips under ``root``, sorted by path: ``(path, kind, name without extension)``, and
    the files that are neither (``ignored``). A sub-folder whose name matches ``regex`` is a
    frame folder (not entered); one that holds images but does not match is returned too,
    so that its name is reported rather than its frames ignored one by one."""
    found: list[tuple[Path, ClipKind, str]] = []
    ignored: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        subdirs = sorted(d for d in dirs if not d.startswith("."))
        dirs.clear()  # os.walk enters only the folders left in dirs: not frame folders
        for d in subdirs:
            if regex.fullmatch(d):
                found.append((here / d, ClipKind.FRAMES, d))
            else:
                dirs.append(d)
        files = sorted(f for f in files if not f.startswith("."))
        videos = [f for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
        if here != root and not videos and any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            found.append((here, ClipKind.FRAMES, here.name))
            continue
        found += [(here / f, ClipKind.VIDEO, os.path.splitext(f)[0]) for f in videos]
        ignored += [str(here / f) for f in files if not f.lower().endswith(VIDEO_EXTENSIONS)]
    return sorted(found, key=lambda c: c[0]), ignored


def actor_folds(actors: np.ndarray, k: int) -> np.ndarray:
    """Fold 1..k of every clip: the distinct actors, sorted (numbers by value), cut into k
    contiguous runs whose sizes differ by at most one; an actor's clips share a fold.

    Raises:
        DataError: fewer actors than folds, or clips without an actor.
    """
    if (actors == "").any():
        raise DataError(f"folds={k}: {int((actors == '').sum())} clip(s) have no actor in their name")
    uniq = sorted(set(actors.tolist()), key=lambda a: (0, int(a), a) if a.isdigit() else (1, 0, a))
    if len(uniq) < k:
        raise DataError(f"folds={k}: only {len(uniq)} actor(s) ({', '.join(uniq)}); each fold needs one at least")
    fold_of = {a: f + 1 for f, run in enumerate(np.array_split(np.arange(len(uniq)), k)) for a in
               (uniq[i] for i in run)}
    return np.fromiter((fold_of[a] for a in actors.tolist()), np.int8, len(actors))


# ---------------------------------------------------------------------------- options
def compile_pattern(pattern: str) -> re.Pattern:
    """The compiled pattern; ConfigError if it is not one or has no ``emotion`` group."""
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"option pattern must be a regular expression with a (?P<emotion>...) group, "
                          f"got {pattern!r}")
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"pattern {pattern!r} is not a regular expression: {e}") from None
    if "emotion" not in regex.groupindex:
        raise ConfigError(f"pattern {pattern!r} has no (?P<emotion>...) group; name the part of the file name "
                          f"that holds the emotion code")
    return regex


def _key(code) -> int | str:
    """Codes that are numbers compare by value ("01" == "1" == 1)."""
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    s = str(code).strip()
    return int(s) if s.isascii() and s.isdigit() else s


def _pairs(option: str, spec) -> list[tuple[object, object]]:
    """``"a=x,b=y"`` or a mapping -> [(a, x), (b, y)]."""
    if isinstance(spec, Mapping):
        return list(spec.items())
    if not isinstance(spec, str):
        raise ConfigError(f"option {option} must be a mapping or a string like 'k=v,k=v', got {spec!r}")
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"option {option}: {part!r} is not KEY=VALUE (e.g. {option}=01=neutral,02=drop)")
        out.append((k.strip(), v.strip()))
    return out


def code_table(codes) -> dict[str, str | None]:
    """Codes as written -> canonical emotion name, or None for ``drop``/null."""
    out: dict[str, str | None] = {}
    seen: dict[int | str, str] = {}
    for code, emotion in _pairs("codes", codes):
        code = str(code).strip()
        if _key(code) in seen:
            raise ConfigError(f"codes: code {code!r} given twice (also as {seen[_key(code)]!r})")
        seen[_key(code)] = code
        if emotion is None or str(emotion).strip().lower() == "drop":
            out[code] = None
            continue
        try:
            out[code] = canonical(str(emotion))
        except DataError as e:
            raise ConfigError(f"codes: {code}={emotion}: {e}") from None
    if not out:
        raise ConfigError("codes: none given; expected e.g. '01=neutral,02=sad'")
    return out


def _merge(base: Mapping, changes) -> dict:
    """``base`` codes with ``changes`` (same code by value) put over them."""
    out = {_key(k): (k, v) for k, v in base.items()}
    if changes is not None:
        out.update({_key(k): (k, v) for k, v in _pairs("codes", changes)})
    return {k: v for k, v in out.values()}


def class_of_code(codes: Mapping[str, str | None], classes: tuple[str, ...]) -> dict[int | str, int]:
    """Code (by :func:`_key`) -> index into ``classes``, -1 for a dropped code, from the
    canonical names of :func:`code_table`."""
    out = {}
    for code, emotion in codes.items():
        if emotion is not None and emotion not in classes:
            raise ConfigError(f"codes: {code} means {emotion}, which is not one of the classes {list(classes)}; "
                              f"add it to the classes or leave those clips out ({code}=drop)")
        out[_key(code)] = -1 if emotion is None else classes.index(emotion)
    return out


def _values(option: str, spec) -> tuple[str, ...]:
    """``"01,02"``, ``"01|02"``, a number or a list -> the values as strings."""
    if isinstance(spec, (str, int)) and not isinstance(spec, bool):
        values = [v.strip() for v in re.split(r"[,|]", str(spec))]
    elif isinstance(spec, (list, tuple)):
        values = [str(v).strip() for v in spec]
    else:
        raise ConfigError(f"option {option} must be a value or a list of values, got {spec!r}")
    values = [v for v in values if v]
    if not values:
        raise ConfigError(f"option {option}: no value given")
    return tuple(values)


def parse_select(spec) -> dict[str, tuple[str, ...]]:
    """``"modality=01|02,channel=01"`` or ``{"modality": ["01", "02"]}`` -> group -> values."""
    if spec is None:
        return {}
    return {str(g).strip(): _values(f"select {g}", v) for g, v in _pairs("select", spec)}


# ---------------------------------------------------------------------------- CREMA-D's votes
@dataclass
class CremadVotes:
    """The rows of one rating condition of ``tabulatedVotes.csv``.

    Attributes:
        path: the file.
        condition: ``face``, ``voice`` or ``audiovisual``.
        votes: clip name (``fileName``) -> (6,) float32 counts in :data:`CREMAD_VOTES` order.
        line: clip name -> its line in the file.
        duplicates: rows that repeat an earlier row of the same clip and condition exactly.
    """

    path: Path
    condition: str
    votes: dict[str, np.ndarray]
    line: dict[str, int]
    duplicates: int


def read_cremad_votes(path: str | os.PathLike, condition: str = "face") -> CremadVotes:
    """Read CREMA-D's ``processedResults/tabulatedVotes.csv``.

    The first column (its header is empty) is a row id whose first digit is the rating
    condition (1 voice, 2 face, 3 audio-visual); ``A D F H N S`` count the raters' votes for
    anger, disgust, fear, happy, neutral and sad; ``fileName`` is the clip's name without
    extension. Every row is checked, then the rows of ``condition`` are returned.

    Raises:
        DataError: naming the file (and line) for a missing column, an id whose first
            digit is not 1, 2 or 3, a vote count that is empty, negative or not a whole
            number, an empty ``fileName``, or two rows of one clip in one condition with
            different votes (identical repeats are counted, not refused).
    """
    want = set(CREMAD_VOTES)
    raw = read_columns(path, numeric=lambda header: want & set(header), what="CREMA-D vote table",
                       unnamed_first="id")
    missing = [c for c in (*CREMAD_VOTES, "fileName") if c not in raw.header]
    if missing:
        found = ", ".join(raw.header[:8]) + (", ..." if len(raw.header) > 8 else "")
        raise DataError(f"{raw.path}: no column {', '.join(missing)} in the header ({found}); expected CREMA-D's "
                        f"tabulatedVotes.csv (row id, A, D, F, H, N, S, fileName, ...)")
    ids = raw.cols[raw.header[0]]
    cond = np.strings.slice(ids, 0, 1) if raw.n else ids
    bad = np.flatnonzero(~np.isin(cond, list(CREMAD_CONDITIONS.values())))
    if bad.size:
        raw.fail(int(bad[0]), f"row id {str(ids[bad[0]])!r}: its first digit must be 1 (voice), 2 (face) or 3 "
                              f"(audio-visual)")
    counts = np.stack([raw.num[c] for c in CREMAD_VOTES], axis=1) if raw.n else np.zeros((0, 6), np.float32)
    empty = np.stack([raw.empty[c] for c in CREMAD_VOTES], axis=1) if raw.n else np.zeros((0, 6), bool)
    whole = np.isfinite(counts) & (counts >= 0) & (counts == np.floor(counts)) & ~empty
    bad = np.argwhere(~whole)
    if bad.size:
        i, j = (int(x) for x in bad[0])
        col = list(CREMAD_VOTES)[j]
        cell = raw.cell(col, i)
        raw.fail(i, f"vote count {col} is {repr(cell) if cell else 'empty'}; expected a whole number >= 0")
    names = raw.cols["fileName"]
    blank = np.flatnonzero(np.strings.str_len(names) == 0)
    if blank.size:
        raw.fail(int(blank[0]), "empty fileName; expected the clip's name, e.g. 1001_DFA_ANG_XX")
    key = np.strings.add(np.strings.add(cond, "/"), names)
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    differ = [(int(order[s]), int(order[s + 1])) for s in same
              if not np.array_equal(counts[order[s]], counts[order[s + 1]])]
    if differ:
        i, j = differ[0]
        condition_of = {d: c for c, d in CREMAD_CONDITIONS.items()}
        raw.fail(j, f"clip {str(names[j])!r} has a second row in the {condition_of[str(cond[j])]} condition (first "
                    f"on line {raw.line(i)}) with other votes")
    rows = np.flatnonzero(cond == CREMAD_CONDITIONS[condition])
    votes = {str(names[r]): counts[r] for r in rows}
    line = {str(names[r]): raw.line(int(r)) for r in rows[::-1]}  # the first row of each clip
    return CremadVotes(raw.path, condition, votes, line, duplicates=len(same))


def _attach_cremad_votes(table: ClipTable, path, condition: str) -> ClipTable:
    sheet = read_cremad_votes(path, condition)
    lacking = [e for e in CREMAD_VOTES.values() if e not in table.classes]
    if lacking:
        raise ConfigError(f"{sheet.path}: the classes {list(table.classes)} lack {lacking}, which CREMA-D's raters "
                          f"voted for; use a class set holding all six (e.g. basic7)")
    column = [table.classes.index(e) for e in CREMAD_VOTES.values()]
    votes = np.zeros((len(table), table.num_classes), np.float32)
    digit = CREMAD_CONDITIONS[condition]
    for i, (cid, kind) in enumerate(zip(table.clip_id.tolist(), table.kind.tolist())):
        stem = PurePosixPath(cid).stem if kind == ClipKind.VIDEO else PurePosixPath(cid).name
        row = sheet.votes.get(stem)
        if row is None:
            raise DataError(f"{sheet.path}: no row of the {condition} condition (row id {digit}...) for the clip "
                            f"{cid!r} (fileName {stem}); every clip needs one")
        if row.sum() <= 0:
            raise DataError(f"{sheet.path}:{sheet.line[stem]}: every vote of clip {stem!r} in the {condition} "
                            f"condition is 0; a soft label needs one vote at least")
        votes[i, column] = row
    has = table.label >= 0
    meta = dict(table.meta, votes=str(sheet.path), vote_condition=condition, duplicate_vote_rows=sheet.duplicates,
                label_vote_disagreements=int((votes[has].argmax(axis=1) != table.label[has]).sum()))
    return table.with_columns(votes=votes, meta=meta)
