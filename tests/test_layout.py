"""The shape of the source tree: no import circle among dfer's modules (imports inside
functions counted), dfer's own imports at the top of each file except the few that are
lazy on purpose, no function a reader would have to scroll through, and no module longer
than a sitting's read without the reason at its top."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# imported inside functions on purpose: matplotlib, OpenCV and RetinaFace load only when a
# plot is drawn or a face detected, so `dfer train` and `dfer --help` never pay for them
# heavy to import (matplotlib, the detector, torch's models): imported where used, so that
# reading a config or printing --help stays quick
LAZY = {"dfer.plots", "dfer.preprocess.detect", "dfer.preprocess.track", "dfer.models"}
LAZY_IN = {"dfer.cli"}  # the command line imports each command's module when it runs


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


def _imports(tree: ast.Module, known, parents: bool = True) -> list[tuple[str, bool]]:
    """(dfer module imported, whether inside a function) for every import in ``tree``; a
    submodule brings its parent packages (``parents``)."""
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("dfer"):
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("dfer")]
        else:
            continue
        for name in names:
            parts = name.split(".")
            for k in range(1 if parents else len(parts), len(parts) + 1):
                if ".".join(parts[:k]) in known:
                    found.append((".".join(parts[:k]), id(node) in inside))
    return found


def test_no_import_circle_among_dfer_modules_counting_function_level_imports():
    mods = _modules()
    graph = defaultdict(set)
    for name, tree in mods.items():
        for target, _ in _imports(tree, mods):
            if target != name and not name.startswith(target + "."):  # a package's own parents
                graph[name].add(target)
    # depth-first search for a back edge; report the circle it closes
    state, stack = {}, []

    def visit(v):
        state[v] = "open"
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == "open":
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(w):] + [w]))
            if w not in state:
                visit(w)
        stack.pop()
        state[v] = "done"

    for v in sorted(mods):
        if v not in state:
            visit(v)


def test_dfer_imports_are_at_the_top_but_for_the_lazy_ones():
    mods = _modules()
    late = sorted({(name, target) for name, tree in mods.items() if name not in LAZY_IN
                   for target, inside in _imports(tree, mods, parents=False) if inside and target not in LAZY and target != "dfer"})
    assert not late, f"imports inside functions: {late}"


def test_no_function_is_longer_than_a_screen_without_a_reason():
    # written down, with their reason, so that a new one is a decision and not a drift
    allowed = {"_render_clip": "one synthetic clip drawn shape by shape, read top to bottom"}
    long = []
    for name, tree in _modules().items():
        for f in ast.walk(tree):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = f.body[1:] if ast.get_docstring(f) else f.body
                length = body[-1].end_lineno - body[0].lineno + 1
                if length > 70 and f.name not in allowed:
                    long.append(f"{name}.{f.name} ({length} lines)")
    assert not long, long


#: a module longer than this says why at its top, in its docstring's first paragraph
MAX_MODULE_LINES = 500
LONG_MODULE_REASON = "Kept as one module:"


def test_no_module_is_longer_than_500_lines_without_a_reason():
    long = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        lines = len(text.splitlines())
        first_paragraph = (ast.get_docstring(ast.parse(text)) or "").split("\n\n")[0]
        if lines > MAX_MODULE_LINES and LONG_MODULE_REASON not in first_paragraph:
            long.append(f"{path.relative_to(SRC)} ({lines} lines)")
    assert not long, (f"split these along their concepts, or say why they are one module "
                      f"('{LONG_MODULE_REASON} ...' in the docstring's first paragraph): {long}")


def test_a_run_directory_is_known_and_its_models_loaded_in_dfer_rundir_only():
    """The names of a run's files, and loading a model from a run, a bare checkpoint or the
    shipped file, have one home (dfer.rundir): no other module spells a run file's name or
    builds a model from saved weights. dfer train restores its own checkpoint to resume, and
    dfer.models reads a trunk's weights to start from, dfer.pretrained its own file."""
    run_files = {"config.yaml", "classes.json", "metrics.csv", "precision.json", "results.json", "robust.csv",
                 "checkpoints", "cache", "last.safetensors", "best.safetensors"}
    loaders = {"load_checkpoint": {"dfer.rundir", "dfer.train"}, "create_model_for_weights": {"dfer.rundir"},
               "read_pretrained": {"dfer.rundir", "dfer.models.weights", "dfer.pretrained"}}
    found = []
    for name, tree in _modules().items():
        if name == "dfer.rundir":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in run_files and name != "dfer.models.weights":
                found.append(f"{name}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.Call):
                called = getattr(node.func, "id", getattr(node.func, "attr", None))
                if called in loaders and name not in loaders[called]:
                    found.append(f"{name}:{node.lineno} {called}()")
    assert not found, found
