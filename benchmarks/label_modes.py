"""Hard / soft / MIDAS under each normalisation of the mixed label, on the synthetic corpus.

The MIDAS paper softmaxes the mixed soft label; on probabilities that flattens the target
(see docs in dfer.mixing and ../shared/docs/method-notes.md). This trains TSM-ResNet-18
with the same budget for every row and prints JSON with test UAR / WAR / KL to the votes /
KL to the true mixture, so the default of ``mixing.normalise`` comes from numbers.

    python benchmarks/label_modes.py --out /tmp/label_modes [--clips 400 --epochs 6 --size 48]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROWS = (
    ("hard", "hard", {}),
    ("soft", "soft", {}),
    ("midas (none)", "midas", {"normalise": "none"}),
    ("midas (softmax, tau=1: paper-literal on probabilities)", "midas", {"normalise": "softmax", "temperature": 1.0}),
    ("midas (softmax, tau=1/10: softmax over vote counts)", "midas", {"normalise": "softmax", "temperature": 0.1}),
    ("midas-hard (none)", "midas-hard", {"normalise": "none"}),
    ("mixup", "mixup", {}),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/dfer_label_modes")
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fold", type=int, default=1)
    args = p.parse_args()

    from dfer.config import from_dict, to_dict
    from dfer.data.corpora.synthetic import SynthConfig, write_synthetic_dfew
    from dfer.demo import demo_config
    from dfer.train import train

    out = Path(args.out)
    corpus = out / "DFEW"
    if not corpus.exists():
        write_synthetic_dfew(corpus, SynthConfig(num_clips=args.clips, num_frames=args.frames, size=args.size,
                                                 seed=args.seed))
    rows = []
    for name, mode, mixing in ROWS:
        base = demo_config(corpus, out, mode, epochs=args.epochs, size=args.size, num_frames=8,
                           seed=args.seed, threads=0)
        d = to_dict(base)
        d["name"] = "lm_" + name.split(" (")[0] + "_" + "_".join(f"{k}{v}" for k, v in mixing.items())
        d["mixing"].update(mixing)
        d["data"]["source"]["fold"] = args.fold
        cfg = from_dict(type(base), d).validate()
        t0 = time.perf_counter()
        run = train(cfg)
        res = json.loads((run / "results.json").read_text())
        rows.append({"row": name, "label_mode": mode, **mixing, "uar": res["uar"], "war": res["war"],
                     "kl_to_votes": res.get("kl_to_votes"), "kl_to_truth": res.get("kl_to_truth"),
                     "ece": res.get("ece"), "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"benchmark": "label_modes", "clips": args.clips, "size": args.size, "epochs": args.epochs,
                      "fold": args.fold, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
