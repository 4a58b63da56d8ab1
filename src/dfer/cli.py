"""The ``dfer`` command line.

Each subcommand lives in the module that implements it; that module defines
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``dfer --help`` stays fast and a missing optional piece breaks only its
own command. Errors caused by user input (:class:`dfer.errors.DfeError`) print one line
and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from dfer.errors import ConfigError, DfeError
from dfer.runtime import MODEL_COMMANDS, keep_freed_memory

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("dfer.data.corpora.synthetic", "write a synthetic DFEW-shaped corpus"),
    "train": ("dfer.train", "train a model from a config file"),
    "evaluate": ("dfer.evaluate", "evaluate a run (or, with --pretrained, the shipped model) on labelled clips"),
    "demo": ("dfer.demo", "synthetic corpus + hard/soft/MIDAS models on the CPU, Table 2 layout"),
    "data": ("dfer.data.stats", "inspect a corpus: class distribution, clear/mixed partition, coexistence"),
    "preprocess": ("dfer.preprocess.pipeline", "raw videos -> aligned face frame folders + manifest"),
    "predict": ("dfer.predict", "emotion distribution over time for any video or image"),
    "cv": ("dfer.experiments", "k-fold cross-validation of a config"),
    "compare": ("dfer.compare", "one table of several cross-validation results"),
    "reproduce": ("dfer.reproduce", "run the recipes of one of the paper's tables"),
}


class _OneLineParser(argparse.ArgumentParser):
    """A command's parser whose usage errors are one line and exit 2, like every other
    error of the user's (``dfer predict: error: --size must be at most 1024, got 100000``)."""

    def error(self, message: str):
        # the value checks of dfer.config.arg say "must be ...": name the option before it
        raise ConfigError(re.sub(r"^argument ([^:]+): must be", r"\1 must be", message))


def _lazy_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="dfer", description="Dynamic facial expression recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"dfer {__import__('dfer').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return parser, sub


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        parser, _ = _lazy_parser()
        if not argv:
            parser.print_help()
            return 2
        parser.parse_args(argv)  # prints usage/--help/--version and exits
        return 2
    name = argv[0]
    module_name, help_ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("dfer"):
            print(f"dfer {name}: not available in this build ({e.name} missing)", file=sys.stderr)
            return 2
        raise
    parser = _OneLineParser(prog=f"dfer {name}", description=help_)
    module.add_arguments(parser)
    # intermixed: key=value overrides may come before or after options (argparse cannot
    # intermix around sub-commands, so `dfer data stats` parses plainly)
    nested = any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    try:
        args = parser.parse_args(argv[1:]) if nested else parser.parse_intermixed_args(argv[1:])
        if name in MODEL_COMMANDS:
            keep_freed_memory()  # training and inference reuse their activations' pages (see its docstring)
        return int(module.run(args) or 0)
    except DfeError as e:
        print(f"dfer {name}: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `dfer data stats ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"dfer {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
