"""dfer: dynamic facial expression recognition with soft labels.

Clips are always laid out as ``(B, T, C, H, W)`` once batched; the README says how to start
and where to go next, ``docs/`` holds the measurements and the design notes.

The face-expression model that ships with dfer is one call away (torch is imported on
first use, not by ``import dfer``)::

    import dfer

    model = dfer.load_pretrained()                    # FER+ ResNet-18, inside the package
    report = dfer.predict_video("clip.mp4", model)   # or model=None: the shipped model
    print(report["summary"]["dominant"], [w["top"] for w in report["windows"]])
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> module that defines it, imported on first access (PEP 562)
_LAZY = {
    "load_pretrained": "dfer.predict",
    "predict_video": "dfer.predict",
    "load_model": "dfer.predict",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    raise AttributeError(f"module 'dfer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
