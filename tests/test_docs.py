"""The README and docs/*.md say what is true of the code: every path and link they give
exists, every ``dfer <command> --flag`` they show is a flag of that command's parser, every
config key they show is a field of :mod:`dfer.config`, every test they name exists, and the
model list of :mod:`dfer.models` is the registry's.

Cheap by design: the documents are read as text, the parsers are built in this process
the way :func:`dfer.cli.main` builds them, and tests are found by parsing their files.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import re
import shlex
import typing
import unicodedata
from functools import cache
from pathlib import Path

import pytest

from dfer import cli, config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
IDS = [str(p.relative_to(ROOT)) for p in DOCS]

#: folders at the repository's root whose paths the documents give relative to it
TOP = ("src", "configs", "benchmarks", "tests", "docs")
PATH = re.compile(rf"(?<![\w./-])((?:{'|'.join(TOP)})/[\w./-]*)")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
NODE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
SECTIONS = ("data", "model", "optim", "mixing", "eval", "robust")
KEY = re.compile(rf"(?<![\w.$/-])((?:{'|'.join(SECTIONS)})(?:\.\w+)+)(?=\s*[:=`]|\s*$)")
QUOTED_SECTION = re.compile(r"\b(README|[\w-]+\.md)\W{0,3}, \"([^\"]+)\"")


def _code(text: str) -> list[str]:
    """The code in a Markdown text: fenced blocks, indented blocks and inline spans, each a
    string (a block's lines joined where they end in a backslash)."""
    spans, fenced, lines = [], False, []
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    ") and not line.lstrip().startswith(("-", "|", "*")):
            lines.append(line)
            continue
        spans += re.findall(r"`([^`\n]+)`", line)
    spans += re.sub(r"\\\n\s*", " ", "\n".join(lines)).splitlines()
    return spans


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def _headings(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [m.group(1).strip() for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)]


@cache
def _parser(command: str) -> argparse.ArgumentParser:
    module = importlib.import_module(cli.COMMANDS[command][0])
    parser = cli._OneLineParser(prog=f"dfer {command}")
    module.add_arguments(parser)
    return parser


def _subparser(parser: argparse.ArgumentParser, word: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(word)
    return None


def _dfer_calls(code: str) -> list[list[str]]:
    """The words of every ``dfer COMMAND ...`` (or ``-m dfer COMMAND ...``) in a line of code,
    up to its end, a comment or the next command."""
    code = code.split(" #")[0].replace("[", " ").replace("]", " ")
    try:
        words = shlex.split(code, posix=True)
    except ValueError:
        words = code.split()
    calls = []
    for i, word in enumerate(words):
        if word in ("dfer", ".venv/bin/dfer") and i + 1 < len(words) and words[i + 1] in cli.COMMANDS:
            call = []
            for w in words[i + 1:]:
                if w in ("|", "&&", ";", "||") or w.startswith(("#", ">")):
                    break
                call.append(w)
            calls.append(call)
    return calls


def _config_field(cls, keys: list[str]) -> bool:
    """Whether ``keys`` (``["mixing", "normalise"]``) name a field of dataclass ``cls``; a
    dict-valued field (``options``, ``kwargs``) takes any key below it."""
    for i, key in enumerate(keys):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if key not in fields:
            return False
        tp = typing.get_type_hints(cls)[key]
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] or [typing.get_origin(tp) or tp]
        cls = inner[0]
        if not dataclasses.is_dataclass(cls):
            return cls is dict or i == len(keys) - 1
        for arg in typing.get_args(tp):  # list[TrainSourceConfig]
            if dataclasses.is_dataclass(arg):
                cls = arg
    return True


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_path_and_relative_link_exists(doc):
    text = doc.read_text()
    missing = []
    for span in _code(text):
        for path in PATH.findall(span):
            path = path.split("::")[0].rstrip(".,")
            if any(c in path for c in "*…{<") or "KIND" in path:
                continue
            if not (ROOT / path).exists():
                missing.append(path)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file) if file else doc
        if not path.exists():
            missing.append(target)
        elif anchor and path.suffix == ".md" and anchor not in {_slug(h) for h in _headings(path)}:
            missing.append(f"{target} (no such section)")
    assert not missing, f"{doc.name} names what does not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_sections_named_in_quotes_exist(doc):
    """``(README, "Longer training")`` and ``docs/results.md, "Label modes on real votes"``
    name a section of that file."""
    missing = []
    for file, title in QUOTED_SECTION.findall(doc.read_text()):
        target = ROOT / "README.md" if file == "README" else doc.parent / file
        if not target.exists() or title not in _headings(target):
            missing.append(f'{file}, "{title}"')
    assert not missing, f"{doc.name} names sections that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_dfer_flag_shown_is_a_flag_of_its_command(doc):
    unknown, seen = [], 0
    for span in _code(doc.read_text()):
        for call in _dfer_calls(span):
            parser = _parser(call[0])
            words = call[1:]
            if words and (sub := _subparser(parser, words[0])) is not None:
                parser, words = sub, words[1:]
            for word in words:
                if word.startswith("-") and len(word) > 1 and not re.match(r"-\d", word):
                    seen += 1
                    flag = word.split("=")[0]
                    if flag not in parser._option_string_actions:
                        unknown.append(f"dfer {call[0]} {flag}")
    assert not unknown, f"{doc.name} shows flags its commands do not have: {unknown}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_config_key_shown_is_a_setting(doc):
    unknown = []
    for span in _code(doc.read_text()):
        for key in KEY.findall(span):
            parts = key.split(".")
            if parts[-1] in ("csv", "json", "yaml", "py", "png", "md", "txt"):
                continue  # a file name (robust.csv), not a key
            if not _config_field(config.RunConfig, parts):
                unknown.append(key)
    assert not unknown, f"{doc.name} shows config keys that dfer.config does not have: {unknown}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_test_named_exists(doc):
    missing = []
    for file, name in NODE.findall(doc.read_text()):
        path = ROOT / file
        names = {node.name for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.FunctionDef)} if path.exists() else set()
        if name not in names:
            missing.append(f"{file}::{name}")
    assert not missing, f"{doc.name} names tests that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=IDS)
def test_every_dfer_name_shown_imports(doc):
    """``dfer.checkpoint.read_checkpoint``, ``dfer.runtime.keep_freed_memory``: a module, or
    a name in one, that exists."""
    missing = []
    for span in _code(doc.read_text()):
        for ref in re.findall(r"(?<![\w./-])(dfer(?:\.\w+)+)", span):
            parts, obj = ref.split("."), None
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                break
            for name in parts[i:]:
                obj = getattr(obj, name, None)
            if obj is None:
                missing.append(ref)
    assert not missing, f"{doc.name} names what dfer does not have: {missing}"


def test_the_checks_find_what_they_look_for():
    """The patterns above do see the README's commands, flags, keys and paths (a pattern
    that matched nothing would pass every document)."""
    code = _code((ROOT / "README.md").read_text())
    calls = [c for span in code for c in _dfer_calls(span)]
    assert {"train", "predict", "cv", "preprocess", "data", "evaluate"} <= {c[0] for c in calls}
    assert any("--pretrained" in c for c in calls)
    assert {"mixing.normalise", "data.source.root", "optim.epochs"} <= {k for s in code for k in KEY.findall(s)}
    assert "configs/paper/table2_tsm_midas.yaml" in {p for s in code for p in PATH.findall(s)}
    assert not _config_field(config.RunConfig, ["mixing", "normalize"])
    assert _config_field(config.RunConfig, ["data", "train_sources", "repeat"])
    assert _slug("Label modes on real votes") == "label-modes-on-real-votes"
    reliability = (ROOT / "docs" / "reliability.md").read_text()
    assert len(NODE.findall(reliability)) > 10


def test_the_model_list_in_the_docstring_is_the_registry():
    import dfer.models

    doc = dfer.models.__doc__.split("Registered")[1].split("Each exposes")[0]
    assert set(re.findall(r"``(\w+)``", doc)) == set(dfer.models.list_models())
