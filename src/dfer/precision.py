"""The precision a training run computes in (``optim.precision``), chosen once and kept.

- ``fp32``: no autocast anywhere.
- ``bf16``: autocast to bfloat16 (on the CPU with the convolutions' weights in channels-last
  layout, the layout oneDNN's bf16 kernels are fast in). A CPU without native bf16
  instructions (``avx512_bf16`` / ``amx_bf16``) runs it, much slower, and says so once.
- ``fp16``: autocast to float16 with a gradient scaler; CUDA only.
- ``auto``: on CUDA, bf16 where the GPU has it, else fp16 (mixed precision). On the CPU,
  measured: a few training steps of the run's own model at the run's own input shape in
  fp32, in fp32 with the convolutions' weights channels-last, and in bf16 + channels-last,
  on copies of the model (the run's weights, batch-norm statistics and random streams are
  untouched). The channels-last layout is kept in fp32 if it takes at most
  :data:`LAYOUT_GAIN` of the contiguous layout's time (the same arithmetic in another
  order: a free gain); bf16 only if it takes at most :data:`MIN_GAIN` of the better fp32's.
  The same model at 48 px ran 1.2x faster in bf16 on an Intel Xeon with AMX and 10-15x
  slower on an AMD EPYC without native bf16, where fp32 with channels-last weights ran
  1.17x faster than contiguous at 64 px and 1.06x at 48: only a measurement decides.

Because ``auto`` decides by timing, two runs of one config may compute in different
layouts (a near tie, as for small models, falls either way) and then agree only up to
float rounding; set ``fp32`` where independent runs must be equal bit for bit (the tests
that compare them do).

The choice, how it was made and the timings go to the run's ``precision.json``; a resumed
run reads it back and computes as it began, wherever it resumes. A run that began before
dfer recorded its precision resumes as dfer then computed: fp32 on the CPU, mixed
precision on CUDA.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dfer.errors import ConfigError, DataError
from dfer.inference import channels_last
from dfer.io import write_text_atomic
from dfer.losses import soft_target_cross_entropy
from dfer.rundir import PRECISION_FILE

#: bf16 must take at most this share of fp32's time per step for ``auto`` to choose it
MIN_GAIN = 0.9
#: fp32 with channels-last weights must take at most this share of the contiguous layout's time
LAYOUT_GAIN = 0.95
#: the run's record of its precision
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    """What a run computes in.

    Attributes:
        name: ``fp32``, ``bf16`` or ``fp16``.
        channels_last: the model's 2-D convolutions hold their weights channels-last.
        how: ``set`` (by the config), ``measured`` (``auto`` on the CPU), ``device``
            (``auto`` on CUDA), ``resumed`` (read back from the run) or ``legacy`` (a run
            begun before precision was recorded).
        seconds_per_step: the measured time of one training step per precision tried.
    """

    name: str
    channels_last: bool = False
    how: str = "set"
    seconds_per_step: dict[str, float] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype; None for fp32 (no autocast)."""
        return _DTYPES[self.name]


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX), read from the
    flags the kernel reports; False where they cannot be read (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def step_seconds(model: torch.nn.Module, shape: tuple[int, ...], num_classes: int, dtype: torch.dtype | None,
                 steps: int = 2, give_up_after: float = float("inf")) -> float:
    """Median seconds of one forward + backward pass of ``model`` on a random batch of
    ``shape`` under autocast ``dtype`` (None: fp32), after one warm-up pass; the warm-up
    alone is returned if it already took longer than ``give_up_after``."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    clip = torch.randn(shape, generator=gen).to(device)
    target = torch.softmax(torch.randn(shape[0], num_classes, generator=gen), 1).to(device)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(clip)
        loss = soft_target_cross_entropy(logits.float(), target)
        model.zero_grad(set_to_none=True)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        if i == 0 and times[0] > give_up_after:
            return times[0]
    return sorted(times[1:])[len(times[1:]) // 2]


def measure_cpu(model: torch.nn.Module, shape: tuple[int, ...], num_classes: int) -> Precision:
    """``auto`` on the CPU: time fp32 (contiguous and channels-last weights) and bf16 +
    channels-last on copies of ``model`` and keep the fastest (see the module docstring)."""
    with torch.random.fork_rng(devices=[]):  # dropout draws here leave the run's stream alone
        fp32 = step_seconds(copy.deepcopy(model).train(), shape, num_classes, None)
        fp32_cl = step_seconds(channels_last(copy.deepcopy(model)).train(), shape, num_classes, None,
                               give_up_after=3 * fp32)
        bf16 = step_seconds(channels_last(copy.deepcopy(model)).train(), shape, num_classes, torch.bfloat16,
                            give_up_after=3 * min(fp32, fp32_cl))
    layout = fp32_cl <= LAYOUT_GAIN * fp32
    best = fp32_cl if layout else fp32
    name = "bf16" if bf16 <= MIN_GAIN * best else "fp32"
    return Precision(name, channels_last=name == "bf16" or layout, how="measured",
                     seconds_per_step={"fp32": round(fp32, 4), "fp32+channels_last": round(fp32_cl, 4),
                                       "bf16": round(bf16, 4)})


def choose_precision(setting: str, model: torch.nn.Module, device: torch.device, shape: tuple[int, ...],
                     num_classes: int) -> Precision:
    """The precision of a new run under ``optim.precision = setting`` (see the module
    docstring); ``shape`` is one process's input batch, ``(B, T, C, H, W)``.

    Raises:
        ConfigError: ``fp16`` on the CPU.
    """
    if setting == "auto":
        if device.type == "cuda":
            return Precision("bf16" if torch.cuda.is_bf16_supported() else "fp16", how="device")
        return measure_cpu(model, shape, num_classes)
    if setting == "fp16" and device.type != "cuda":
        raise ConfigError("optim.precision fp16 needs a CUDA device; on the CPU use auto, fp32 or bf16")
    if setting == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
        print("dfer: optim.precision bf16 on a CPU without native bf16 (avx512_bf16 or amx_bf16): it runs, "
              "but far slower than fp32; precision auto measures which is faster", file=sys.stderr)
    return Precision(setting, channels_last=setting == "bf16" and device.type == "cpu")


def write_record(run_dir: Path, precision: Precision) -> None:
    write_text_atomic(Path(run_dir) / PRECISION_FILE, json.dumps(asdict(precision), indent=1))


def read_record(run_dir: Path, device: torch.device) -> Precision:
    """The precision a run began with, to resume it; a run without a record (begun by an
    earlier dfer) computes as dfer then did: fp32 on the CPU, mixed precision on CUDA.

    Raises:
        DataError: an unreadable record, or one that names no known precision.
    """
    path = Path(run_dir) / PRECISION_FILE
    if not path.exists():
        if device.type == "cuda":
            return Precision("bf16" if torch.cuda.is_bf16_supported() else "fp16", how="legacy")
        return Precision("fp32", how="legacy")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name, channels = data["name"], data.get("channels_last", False)
        timings = data.get("seconds_per_step", {})
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a precision record dfer wrote ({type(e).__name__}: {e}); "
                        f"delete it to resume as fp32 on the CPU, or restart the run") from None
    if name not in _DTYPES or not isinstance(channels, bool) or not isinstance(timings, dict):
        raise DataError(f"{path}: name must be fp32, bf16 or fp16 and channels_last true or false, got "
                        f"{name!r}, {channels!r}")
    if name == "fp16" and device.type != "cuda":
        raise DataError(f"{path}: the run began in fp16 on CUDA; it cannot resume on the CPU")
    return Precision(name, channels_last=channels, how="resumed", seconds_per_step=timings)
