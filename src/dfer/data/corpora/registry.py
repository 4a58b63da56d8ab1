"""One entry point from "a corpus on disk" to a :class:`~dfer.data.table.ClipTable`.

``load_source(kind, root, **options)`` dispatches to the adapter of ``kind``;
``load_corpus(spec)`` takes the same as a mapping (a config's ``data`` section) or a bare
path whose kind is detected from what lies there. Adapters are imported only when used.

=========  ==================================================  ==============================
kind       adapter                                             ``root`` is
=========  ==================================================  ==============================
dfew       :func:`dfer.data.corpora.dfew.load_dfew`            the DFEW folder
ferv39k    :func:`dfer.data.corpora.ferv39k.load_ferv39k`      the FERV39K folder
afew       :func:`dfer.data.corpora.afew.load_afew`            folder of Train_AFEW/Val_AFEW
mafw       :func:`dfer.data.corpora.mafw.load_mafw`            the MAFW folder
listfile   :func:`dfer.data.corpora.listfile.load_listfile`    the list file (``root=`` option
                                                               re-roots its paths)
manifest   :func:`dfer.data.corpora.manifest.load_manifest`    the CSV / JSON-lines manifest
ferplus    :func:`dfer.data.corpora.ferplus.load_ferplus`      FER+'s folders, or the folder of
                                                               fer2013.csv + fer2013new.csv
synthetic  write_synthetic_dfew (if absent) + load_dfew        the synthetic corpus folder
acted      :func:`dfer.data.corpora.acted.load_acted`          a folder of clips labelled by
                                                               their names (``pattern=``,
                                                               ``codes=``)
javanese   :func:`dfer.data.corpora.acted.load_javanese`       the folder of ``AA-SS-EE_RR.mp4``
ravdess    :func:`dfer.data.corpora.acted.load_ravdess`        the folder of ``Actor_NN/``
cremad     :func:`dfer.data.corpora.acted.load_cremad`         the folder of CREMA-D's clips
                                                               (``votes=`` tabulatedVotes.csv)
=========  ==================================================  ==============================

Options arrive from a config or a command line as plain values (str, int, bool, null):
:func:`option_values` types ``KEY=VALUE`` words by the adapter's annotations.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dfer.data.corpora.synthetic import SynthConfig, write_synthetic_dfew
from dfer.data.table import ClipTable
from dfer.errors import ConfigError, DataError

#: kind -> (module, function)
ADAPTERS: dict[str, tuple[str, str]] = {
    "dfew": ("dfer.data.corpora.dfew", "load_dfew"),
    "ferv39k": ("dfer.data.corpora.ferv39k", "load_ferv39k"),
    "afew": ("dfer.data.corpora.afew", "load_afew"),
    "mafw": ("dfer.data.corpora.mafw", "load_mafw"),
    "listfile": ("dfer.data.corpora.listfile", "load_listfile"),
    "manifest": ("dfer.data.corpora.manifest", "load_manifest"),
    "ferplus": ("dfer.data.corpora.ferplus", "load_ferplus"),
    "synthetic": ("dfer.data.corpora.dfew", "load_dfew"),
    "acted": ("dfer.data.corpora.acted", "load_acted"),
    "javanese": ("dfer.data.corpora.acted", "load_javanese"),
    "ravdess": ("dfer.data.corpora.acted", "load_ravdess"),
    "cremad": ("dfer.data.corpora.acted", "load_cremad"),
}
KINDS = tuple(ADAPTERS)


def _adapter(kind: str):
    if kind not in ADAPTERS:
        raise ConfigError(f"corpus kind {kind!r} unknown; expected one of {', '.join(KINDS)}")
    module, fn = ADAPTERS[kind]
    try:
        return getattr(importlib.import_module(module), fn)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise ConfigError(f"corpus kind {kind!r} is not available in this build ({module} missing)") from None
        raise


def _accepts(tp: Any, value: Any) -> bool:
    """Whether ``value`` as a config or command line gives it (str, int, float, bool, null,
    a list, a mapping) can be an argument annotated ``tp``; unknown annotations accept it."""
    if tp is type(None):
        return value is None
    if tp in (int, float) and isinstance(value, bool):
        return False
    if tp is float:
        return isinstance(value, (int, float))
    if tp in (str, int, bool):
        return isinstance(value, tp)
    origin = typing.get_origin(tp) or tp
    if origin in (tuple, list, Sequence):
        return isinstance(value, (list, tuple))
    if origin in (dict, Mapping):
        return isinstance(value, Mapping)
    if origin is os.PathLike:
        return isinstance(value, (str, os.PathLike))
    return True


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp) or tp
    if tp is type(None):
        return "null"
    if origin in (tuple, list, Sequence):
        return "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _check_types(kind: str, fn, options: dict[str, Any], where: str) -> None:
    """An option given a value of a type its adapter does not take (``classes: 5``) is one
    line, not a crash inside the adapter."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: the adapter checks for itself
        return
    for name, value in options.items():
        tp = hints.get(name)
        if tp is None:
            continue
        args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        if not any(_accepts(a, value) for a in args):
            wanted = " or ".join(dict.fromkeys(_type_name(a) for a in args if a is not os.PathLike))
            raise ConfigError(f"{where}corpus kind {kind!r}: option {name} expects {wanted}, got {value!r}")


def _given(fn, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as the adapter gets them: null in a config means "the adapter's default",
    except where null is a value the adapter gives a meaning other than its default (DFEW's
    check_annotators: None = any sum)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in options.items()
            if v is not None or (k in params and params[k].default not in (None, inspect.Parameter.empty))}


def _check_call(kind: str, fn, options: dict[str, Any], where: str = "") -> None:
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            allowed = [p for p in list(params)[1:]]
            raise ConfigError(f"{where}corpus kind {kind!r}: unknown option(s) {unknown}; expected {allowed}")
    needed = sorted(n for n, p in params.items() if p.kind is p.KEYWORD_ONLY and p.default is p.empty
                    and n not in options)
    if needed:
        raise ConfigError(f"{where}corpus kind {kind!r} needs the option(s) {needed}")
    _check_types(kind, fn, options, where)


def check_options(kind: str, options: Mapping[str, Any], kind_name: str = "kind",
                  options_name: str = "options") -> None:
    """Refuse, before anything is read, a ``kind`` or ``options`` that :func:`load_source`
    would refuse: an unknown kind, an unknown or missing option, an option of the wrong type.

    Args:
        kind_name, options_name: the settings that hold them, to name in the message
            (``data.source.kind``, ``data.source.options``).

    Raises:
        ConfigError: naming the setting.
    """
    if kind not in ADAPTERS:
        raise ConfigError(f"{kind_name} must be one of {', '.join(KINDS)}, got {kind!r}")
    fn = _adapter(kind)
    options = dict(options)
    if kind == "synthetic":  # the fields of the corpus it writes when there is none yet
        for f in dataclasses.fields(SynthConfig):
            options.pop(f.name, None)
    _check_call(kind, fn, _given(fn, options), f"{options_name}: ")


def _call(kind: str, fn, first: Any, options: dict[str, Any]):
    options = _given(fn, options)
    _check_call(kind, fn, options)
    return fn(first, **options)


def option_values(kind: str, words: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` words of a command line -> options of ``kind``'s adapter, each value
    typed by the option's annotation: ``null`` (or nothing) is None where None is allowed,
    ``true``/``false`` a bool, a whole number an int, a number a float; anything else
    stays text (a pattern or a code table is never parsed as YAML).

    Raises:
        ConfigError: a word without ``=``, or a key given twice. (An unknown key is
            reported by :func:`load_source` with the options the kind has.)
    """
    fn = _adapter(kind)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: values stay text
        hints = {}
    out: dict[str, Any] = {}
    for word in words:
        key, sep, text = word.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"option {word!r} is not KEY=VALUE")
        if key in out:
            raise ConfigError(f"option {key} given twice")
        tp = hints.get(key)
        args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
        low = text.strip().lower()
        value: Any = text
        if type(None) in args and low in ("", "null", "none"):
            value = None
        elif bool in args and low in ("true", "false"):
            value = low == "true"
        elif int in args and re.fullmatch(r"[+-]?[0-9]+", low):
            value = int(low)
        elif float in args:
            try:
                value = float(low)
            except ValueError:
                pass
        out[key] = value
    return out


def detect_kind(path: str | os.PathLike) -> str:
    """Guess a corpus kind from what lies at ``path``.

    A ``.csv``/``.tsv``/``.jsonl`` file is a manifest, a ``.txt`` file a list file; a folder
    is recognised by its corpus's own sub-folders (DFEW's ``EmoLabel_DataSplit``, FERV39K's
    ``4_setups``/``2_ClipsforFaceCrop``/``0_7_LabelClips``, AFEW's ``Train_AFEW``/``Val_AFEW``,
    MAFW's ``Labels/single_label.txt``, FER+'s ``FER2013Train/label.csv`` or
    ``fer2013.csv`` + ``fer2013new.csv``; a synthetic corpus has ``synthetic_config.json``).
    """
    p = Path(path)
    if p.is_file():
        ext = p.suffix.lower()
        if ext in (".csv", ".tsv", ".jsonl", ".json", ".ndjson"):
            return "manifest"
        if ext in (".txt", ".lst", ".list"):
            return "listfile"
        raise DataError(f"{p}: cannot tell the corpus kind of a {ext or 'extension-less'} file; "
                        f"pass the kind explicitly (one of {', '.join(KINDS)})")
    if not p.is_dir():
        raise DataError(f"{p}: corpus not found")
    if (p / "synthetic_config.json").exists():
        return "synthetic"
    if (p / "EmoLabel_DataSplit").is_dir():
        return "dfew"
    if any((p / d).is_dir() for d in ("4_setups", "2_ClipsforFaceCrop", "0_7_LabelClips")):
        return "ferv39k"
    if (p / "Train_AFEW").is_dir() or (p / "Val_AFEW").is_dir():
        return "afew"
    if (p / "Labels" / "single_label.txt").exists():
        return "mafw"
    if any((p / d / "label.csv").is_file() for d in ("FER2013Train", "FER2013Valid", "FER2013Test")) or (
            (p / "fer2013.csv").is_file() and (p / "fer2013new.csv").is_file()):
        return "ferplus"
    raise DataError(f"{p}: not a DFEW, FERV39K, AFEW, MAFW, FER+ or synthetic folder; pass the kind explicitly "
                    f"(one of {', '.join(KINDS)}) or use a manifest")


def load_source(kind: str | None, root: str | os.PathLike, /, **options: Any) -> ClipTable:
    """Load a corpus of ``kind`` (None = :func:`detect_kind`) from ``root``.

    Args:
        kind: one of :data:`KINDS`, or None.
        root: where the corpus lies (the list file or manifest itself for those kinds).
        options: keyword arguments of the adapter (e.g. ``classes=``, ``layout=``,
            ``root=`` for a list file or manifest). For ``synthetic``, fields of
            :class:`dfer.data.corpora.synthetic.SynthConfig` (``num_clips=``, ...) are used
            to write the corpus when ``root`` does not hold one yet.

    Raises:
        ConfigError: unknown kind or option. DataError: from the adapter, or two clips
            that are one file (:meth:`ClipTable.refuse_repeated_files`).
    """
    kind = kind or detect_kind(root)
    fn = _adapter(kind)
    if kind == "synthetic":
        fields = {f.name for f in dataclasses.fields(SynthConfig)}
        synth = {k: v for k in list(options) if k in fields and (v := options.pop(k)) is not None}
        p = Path(root)
        if not (p / "synthetic_config.json").exists():
            write_synthetic_dfew(p, SynthConfig(**synth))
    # every adapter's clips are judged by the files they are (the list and manifest readers
    # already did so, naming lines; the others are checked here)
    return _call(kind, fn, root, options).refuse_repeated_files()


def load_corpus(spec: str | os.PathLike | Mapping[str, Any]) -> ClipTable:
    """Load a corpus from a path (kind detected) or a mapping ``{"kind": ..., "root": ...,
    **options}`` (``path`` is accepted for ``root``; ``kind`` may be omitted)."""
    if isinstance(spec, (str, os.PathLike)):
        return load_source(None, spec)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"corpus spec must be a path or a mapping with 'kind' and 'root', got {type(spec).__name__}")
    opts = dict(spec)
    kind = opts.pop("kind", None)
    root = opts.pop("root", None) if "path" not in opts else opts.pop("path")
    if root is None:
        raise ConfigError(f"corpus spec {dict(spec)} has no 'root' (or 'path')")
    return load_source(kind, root, **opts)
