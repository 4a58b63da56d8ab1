"""Random values and junk through every config field, as overrides on the command line:
the config is read or refused with one ConfigError line (exit 2), never a traceback; a
value refused is refused by ``dfer train`` before any data is read, with nothing written."""

from __future__ import annotations

import dataclasses
import typing

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfer.cli import main
from dfer.config import RunConfig, load_config
from dfer.errors import DfeError


def _fields(cls, prefix: str = "") -> list[str]:
    """Dotted names of every leaf field of the config tree (``optim.lr``, ``data.source.kind``...)."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        sub = tp if dataclasses.is_dataclass(tp) else (inner[0] if inner else None)
        if sub is not None:
            out += _fields(sub, f"{prefix}{f.name}.")
        out.append(f"{prefix}{f.name}")  # a section given a scalar is junk too
    return out


FIELDS = _fields(RunConfig)

# values as a user might type them after "key=": numbers at and past every boundary, words,
# YAML that parses to lists / mappings / null, and text that does not parse at all
VALUES = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-1", "1", "0.5", "1e309", "1e308", "100000", "-1e308", "{classes: 5}", "{frames: 5}", "-0.0", "nan", ".inf", "null", "~", "true", "false", "yes",
                     "[]", "{}", "[1, 2]", "{a: 1}", "[", "{a", "'", "\"x", ": :", "- a", "cuda", "cuda:7",
                     "tpu", "cpu", "auto", "last", "best_val", "soft", "midas", "none", "softmax", "test",
                     "tset", "all", "val", "&a", "*a", "!!python/object:os.system ls"]),
    st.text(max_size=12),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_any_value_of_any_field_is_read_or_refused_with_a_config_error(field, value):
    try:
        cfg = load_config(None, [f"{field}={value}"])
    except DfeError as e:
        text = str(e)
        assert text and "\n" not in text.strip(), text
    else:
        assert isinstance(cfg, RunConfig)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_the_cli_exits_0_or_2_with_one_line(field, value, capsys):
    rc = main(["train", "--print-config", f"{field}={value}"])
    out, err = capsys.readouterr()
    assert rc in (0, 2), (field, value, rc, err)
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err


class _DataRead(Exception):
    """Raised where dfer train would read its first corpus."""


# out_dir is left out: a value accepted there (an absolute path) is where the run would go
TRAIN_FIELDS = [f for f in FIELDS if f != "out_dir"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(TRAIN_FIELDS), value=VALUES)
def test_a_value_refused_stops_train_before_any_data_is_read_and_nothing_is_written(field, value, capsys,
                                                                                    tmp_path_factory):
    import pytest
    import torch

    import dfer.data.splits

    work = tmp_path_factory.mktemp("train")
    overrides = ["data.source.root=/nonexistent/DFEW", "out_dir=runs", f"{field}={value}"]
    try:
        load_config(None, overrides)
        accepted = True
    except DfeError:
        accepted = False
    read = []

    def no_data(*a, **k):
        read.append(a)
        raise _DataRead

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setattr(dfer.data.splits, "load_source", no_data)
        mp.setattr(torch, "set_num_threads", lambda n: None)  # an accepted `threads` must not reach this process
        try:
            rc = main(["train", *overrides])
        except _DataRead:
            rc = None
    out, err = capsys.readouterr()
    if not accepted:
        assert rc == 2 and not read, (field, value, rc, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert not any(work.iterdir()), (field, value, sorted(work.rglob("*")))
    else:  # an accepted value takes train to its data, unless the machine lacks the device it names
        assert rc is None or (rc == 2 and ("CUDA" in err or "has no root" in err)), (field, value, rc, err)


def _options(command: str) -> list[tuple[str, bool]]:
    """(option string, takes a value) of every option of ``dfer COMMAND``."""
    import argparse
    import importlib

    from dfer.cli import COMMANDS

    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    return [(a.option_strings[-1], a.nargs != 0) for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


# commands that stop at their (missing) input; train goes through --print-config above, and
# demo / synth / reproduce would start real work
POSITIONAL = {"evaluate": ["/nonexistent/run"], "predict": ["/nonexistent/clip.mp4"],
              "preprocess": ["/nonexistent/src", "/nonexistent/out"], "cv": [], "compare": ["/nonexistent/a-cv"]}
OPTIONS = [(c, o, v) for c in POSITIONAL for o, v in _options(c)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.sampled_from(OPTIONS), VALUES), min_size=1, max_size=3), data=st.data())
def test_any_option_value_of_any_command_exits_0_or_2(picks, data, capsys, tmp_path_factory):
    command = data.draw(st.sampled_from([c for (c, _, _), _ in picks]))
    argv = [command, *POSITIONAL[command]]
    for (c, option, takes_value), value in picks:
        if c == command:
            argv += [option, value] if takes_value else [option]
    if command == "cv":
        argv += ["--out", str(tmp_path_factory.mktemp("cv")), "data.source.root=/nonexistent/DFEW"]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own usage error: exit 2 with its usage line
        rc = e.code
    out, err = capsys.readouterr()
    assert rc in (0, 1, 2), (argv, rc, err)  # 1: cv --summarise of an incomplete cv
    assert "Traceback" not in err, (argv, err)
