"""The shipped face model's classifier fitted again, its trunk kept, on FER+ Train's votes and
on the windows of acted clips at once: how far a new last layer alone moves the acted clips
of held-out actors, and what it costs on FER+ Valid.

The trunk is run once over every face (FER+ Train and Valid, every aligned frame of the acted
corpus, each also mirrored); the 512-d features are kept and only the linear classifier is
fitted, starting from the shipped one (full-batch L-BFGS):

    loss = CE(FER+ Train votes) + w * CE(acted windows' labels) + decay * |W - W_shipped|^2

``w`` weights the acted windows against FER+ (each term is a mean over its own samples). An
acted window is a stretch of ``--window`` consecutive aligned frames of a clip (50: 1.7 s of
the Javanese clips' 29.97 fps), whose 8 evenly spaced frames (ends included) have their
features averaged, as the shipped model averages a window's 8 frames; a tail shorter than a
window is left out. ``dfer predict``'s windows are close to these but not the same (2 s,
segment centres, a last window ending on the last frame), so the held-out figures to quote
are ``dfer evaluate``'s with the files of ``--write-folds``, through predict's own path. A
clip's answer here is the mean of its windows' distributions over the corpus's classes (the
model's other classes dropped), with flip test-time augmentation (the mean of the logits of
a face and its mirror: for a linear head, the head of the mean feature).

For each ``w``: a cross-validation by actor (the acted corpus's folds: the clips of the
other folds' actors train, FER+ Train trains in every fold) gives held-out clip UAR and the
non-neutral clips called neutral; the fit on every actor gives FER+ Valid accuracy, UAR and
KL to the votes (flip). ``w = 0`` refits on FER+ alone (the shipped classifier, less
the decay's pull, as a check); ``--acted-only`` adds the fit without FER+.

    python benchmarks/acted_linear_probe.py --frames FRAMES --ferplus ../shared/ferplus \\
        --weights FILE --acted-weights 0 0.1 0.3 1 3

``--weights`` is the model file to start from (the 40-epoch model's export for the file dfer
ships; not the shipped file itself, whose classifier already saw every actor). With one
``--acted-weights W``, ``--write FILE`` also writes that model file with the classifier fitted on every actor and FER+ Train (fp16 as
shipped; its metadata kept, ``trained_by`` saying how, ``metrics`` its one-pass FER+ Valid
figures), and ``--write-folds DIR`` the file of each fold, fitted without that fold's actors,
so that ``dfer evaluate --pretrained`` scores the held-out actors through ``dfer predict``'s
own path. ``--cache FILE`` keeps the features between runs (about 4 minutes on 2 cores).
Printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from dfer.data.corpora.registry import load_source
from dfer.data.decode import list_frame_files, read_frames
from dfer.data.table import ClipKind
from dfer.evaluate import _reframed, _source_table, class_index
from dfer.inference import to_model_input
from dfer.losses import soft_target_cross_entropy
from dfer.metrics import confusion_matrix, per_class_recall, summarise, uar
from dfer.predict import input_transform, load_model
from dfer.preprocess.pipeline import recorded_preprocessing

WINDOW_FRAMES = 8  # frames a window of dfer predict feeds the shipped model


@torch.inference_mode()
def _features(model, faces: torch.Tensor) -> torch.Tensor:
    """(N, 2, D) features of normalised faces (N, C, H, W): as given and mirrored."""
    x = faces[:, None]  # one frame a clip: (N, 1, C, H, W)
    return torch.stack([model.features(x), model.features(torch.flip(x, dims=[-1]))], 1)


def ferplus_features(bundle, root: str, split: str, batch: int = 256):
    """(features (N, 2, D), vote distributions (N, C) in the model's classes, majority labels)."""
    from dfer.config import DataConfig, EvalConfig, RunConfig, SourceConfig
    from dfer.data.dataset import build_loader
    from dfer.data.splits import make_dataset

    table, kind, _ = _source_table(f"ferplus:{root}", split, None)
    table = table.resolve_labels("first", 0, f"ferplus {split}")
    index = class_index(bundle.classes, table.classes)
    assert index == list(range(len(bundle.classes))), "FER+ classes in the model's order"
    cfg = RunConfig(data=DataConfig(source=SourceConfig(kind=kind, root=root), num_frames=1, size=bundle.size,
                                    num_workers=0), eval=EvalConfig(num_clips=1, batch_size=batch))
    ds = make_dataset(table, cfg, train=False, num_clips=1, transform=input_transform(bundle, face_crop=False))
    loader = build_loader(ds, batch, shuffle=False, num_workers=0, seed=0, epoch=0, drop_last=False)
    feats, rows = [], []
    for b in loader:
        clip = to_model_input(b["clip"], bundle.device)  # one frame, one clip a face
        feats.append(_features(bundle.model, clip.reshape(-1, *clip.shape[-3:])))
        rows.append(b["index"])
    order = torch.cat(rows).argsort()
    return torch.cat(feats)[order], torch.as_tensor(table.soft_labels(), dtype=torch.float32), table.hard_labels()


def window_picks(n: int, window: int) -> list[np.ndarray]:
    """The frames (indices) of each window of a clip of ``n`` aligned frames: consecutive
    windows of ``window`` frames (a clip shorter than one is one window; a tail shorter than
    a window is left out), 8 evenly spaced frames in each, ends included."""
    if n < 1:
        return []
    starts = range(0, max(1, n - window + 1), window)
    return [np.linspace(s, min(n, s + window) - 1, WINDOW_FRAMES).round().astype(int) for s in starts]


def acted_windows(bundle, table, window: int, batch: int = 256):
    """Per clip, (windows (n, 2, D)): each window's 8 evenly spaced aligned faces' features
    averaged, as given and mirrored, in the bundle's framing."""
    out = []
    for source in table.source:
        _, face_fraction = recorded_preprocessing(source)
        transform = input_transform(_reframed(bundle, face_fraction, source))
        picks = window_picks(len(list_frame_files(source)), window)
        if not picks:
            raise SystemExit(f"{source}: no aligned frame")
        wanted = sorted(set(np.concatenate(picks).tolist()))
        feats = []
        for i in range(0, len(wanted), batch):
            frames = read_frames(source, ClipKind.FRAMES, wanted[i:i + batch])
            feats.append(_features(bundle.model, transform(frames).to(bundle.device)))
        feats = torch.cat(feats)
        where = {f: i for i, f in enumerate(wanted)}
        out.append(torch.stack([feats[[where[f] for f in p]].mean(0) for p in picks]))
    return out


def fit_head(w0, b0, fer_x, fer_y, act_x, act_y, acted_weight: float, decay: float, use_ferplus: bool = True,
             steps: int = 60):
    """The classifier (W, b) minimising the module docstring's loss, from (w0, b0)."""
    W, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = decay * ((W - w0) ** 2).sum()
        if use_ferplus:
            loss = loss + soft_target_cross_entropy(fer_x @ W.T + b, fer_y)
        if act_x is not None and acted_weight > 0:
            loss = loss + acted_weight * F.cross_entropy(act_x @ W.T + b, act_y)
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach(), b.detach()


def clip_answers(W, b, windows, index) -> np.ndarray:
    """(clips, corpus classes) mean over a clip's windows of the flip-averaged head's
    distribution over the corpus's classes."""
    return np.stack([torch.softmax((w.mean(1) @ W.T + b)[:, index], 1).mean(0).numpy() for w in windows])


def acted_scores(probs, labels, classes) -> dict:
    """UAR and recall over the classes present, and the non-neutral clips answered neutral."""
    pred = probs.argmax(1)
    neutral = classes.index("neutral")
    cm = confusion_matrix(labels, pred, len(classes))
    recall = {c: float(r) for c, r in zip(classes, per_class_recall(cm)) if not np.isnan(r)}
    emotional = labels != neutral
    return {"uar": uar(cm), "recall": recall,
            "called_neutral": [int((pred[emotional] == neutral).sum()), int(emotional.sum())]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", required=True, help="a dfer preprocess output of an acted corpus (folds by actor)")
    ap.add_argument("--ferplus", required=True, help="the FER+ folder (Train fits, Valid measures)")
    ap.add_argument("--weights", required=True,
                    help="the model file to start from (python -m dfer.pretrained's output; not a file whose "
                         "classifier was already fitted on these clips)")
    ap.add_argument("--acted-weights", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0, 3.0])
    ap.add_argument("--decay", type=float, default=1e-3, help="pull towards the shipped classifier")
    ap.add_argument("--window", type=int, default=50, help="aligned frames a window spans (2 s at 25 fps)")
    ap.add_argument("--acted-only", action="store_true", help="also fit on the acted windows alone")
    ap.add_argument("--write", help="write the model file fitted on every actor (one --acted-weights)")
    ap.add_argument("--write-folds", help="a folder for the model file of each fold (its actors never fitted)")
    ap.add_argument("--cache", help="a file to keep the features in between runs (same weights, frames, window)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if (args.write or args.write_folds) and len(args.acted_weights) != 1:
        ap.error("--write and --write-folds take exactly one --acted-weights")
    torch.set_num_threads(args.threads)
    os.environ["DFER_PRETRAINED"] = args.weights
    torch.manual_seed(0)
    t0 = time.perf_counter()
    bundle = load_model(pretrained=True, device="cpu", tta="none")
    w0, b0 = bundle.model.classifier.weight.detach().clone(), bundle.model.classifier.bias.detach().clone()
    table = load_source("manifest", os.path.join(args.frames, "manifest.csv"))
    classes, labels = list(table.classes), table.hard_labels()
    index = class_index(bundle.classes, table.classes)
    folds = np.asarray(table.fold)
    if (folds < 1).any():
        raise SystemExit(f"{args.frames}: its manifest has no folds by actor; preprocess with -o folds=4")
    stat = os.stat(args.weights)
    key = {"weights": [os.path.abspath(args.weights), stat.st_size, stat.st_mtime_ns],
           "frames": os.path.abspath(args.frames),
           "ferplus": os.path.abspath(args.ferplus), "window": args.window}
    cached = torch.load(args.cache, weights_only=True) if args.cache and os.path.exists(args.cache) else None
    if cached is not None and json.loads(cached["key"]) == key:
        fer_x, fer_y, val_x, val_y = cached["fer_x"], cached["fer_y"], cached["val_x"], cached["val_y"]
        val_labels, windows = cached["val_labels"].numpy(), list(cached["windows"])
    else:
        fer_x, fer_y, _ = ferplus_features(bundle, args.ferplus, "train")
        val_x, val_y, val_labels = ferplus_features(bundle, args.ferplus, "val")
        windows = acted_windows(bundle, table, args.window)
        if args.cache:
            torch.save({"key": json.dumps(key), "fer_x": fer_x, "fer_y": fer_y, "val_x": val_x, "val_y": val_y,
                        "val_labels": torch.as_tensor(val_labels), "windows": windows}, args.cache)
    print(f"features in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    fer_x2 = fer_x.flatten(0, 1)  # both views of each face train
    fer_y2 = fer_y.repeat_interleave(2, 0)

    def acted_train(keep):
        xs = [w.flatten(0, 1) for w, k in zip(windows, keep) if k]
        ys = [torch.full((w.shape[0] * 2,), index[labels[i]]) for i, (w, k) in enumerate(zip(windows, keep)) if k]
        return torch.cat(xs), torch.cat(ys)

    def ferplus_valid(W, b, flip: bool = True, full: bool = False):
        probs = torch.softmax((val_x.mean(1) if flip else val_x[:, 0]) @ W.T + b, 1).double().numpy()
        s = summarise(probs, val_labels, tuple(bundle.classes), soft_labels=val_y.double().numpy(),
                      has_votes=np.ones(len(val_labels), bool))
        if full:  # what python -m dfer.pretrained records of a run: one pass on its test split
            return {**{k: s.get(k) for k in ("war", "uar", "kl_to_votes", "ece", "per_class_recall", "num_clips")},
                    "split": "val"}
        return {"accuracy": s["war"], "uar": s["uar"], "kl_to_votes": s["kl_to_votes"]}

    rows = {"shipped": {"ferplus_valid": ferplus_valid(w0, b0),
                        "acted_all_clips": acted_scores(clip_answers(w0, b0, windows, index), labels, classes)}}
    settings = [(w, True) for w in args.acted_weights] + ([(1.0, False)] if args.acted_only else [])
    for weight, with_ferplus in settings:
        name = f"w={weight:g}" if with_ferplus else "acted only"
        held = np.zeros((len(table), len(classes)))
        for f in np.unique(folds):
            ax, ay = acted_train(folds != f)
            W, b = fit_head(w0, b0, fer_x2, fer_y2, ax, ay, weight, args.decay, with_ferplus)
            if args.write_folds and with_ferplus:
                os.makedirs(args.write_folds, exist_ok=True)
                _write(os.path.join(args.write_folds, f"fold{f}.safetensors"), W, b, weight, args,
                       f"the actors of every fold but {f}", ferplus_valid(W, b, flip=False, full=True))
            test = np.flatnonzero(folds == f)
            held[test] = clip_answers(W, b, [windows[i] for i in test], index)
        per_fold = [acted_scores(held[folds == f], labels[folds == f], classes)["uar"] for f in np.unique(folds)]
        ax, ay = acted_train(np.ones(len(table), bool))
        W, b = fit_head(w0, b0, fer_x2, fer_y2, ax, ay, weight, args.decay, with_ferplus)
        rows[name] = {"held_out": {**acted_scores(held, labels, classes), "per_fold_uar": per_fold,
                                   "uar_mean": float(np.mean(per_fold)), "uar_std": float(np.std(per_fold, ddof=1))},
                      "ferplus_valid": ferplus_valid(W, b)}
        print(name, json.dumps(rows[name]), file=sys.stderr, flush=True)
        if args.write and with_ferplus:
            _write(args.write, W, b, weight, args, "every actor", ferplus_valid(W, b, flip=False, full=True))
    json.dump({"frames": args.frames, "window": args.window, "decay": args.decay, "rows": rows,
               "seconds": round(time.perf_counter() - t0, 1)}, sys.stdout, indent=1)
    print()
    return 0


def _write(path: str, W, b, weight: float, args, actors: str, metrics: dict) -> None:
    """The shipped file with this classifier (fp16 as shipped), its metadata saying how."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from dfer.io import atomic_path
    from dfer.pretrained import _META_KEY, weights_path

    src = args.weights or weights_path()  # (the tests write from the shipped file)
    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()[_META_KEY])
        state = {k: f.get_tensor(k) for k in f.keys()}
    dtype = state["classifier.weight"].dtype
    state["classifier.weight"], state["classifier.bias"] = W.to(dtype).contiguous(), b.to(dtype).contiguous()
    meta["trained_by"] = (f"{meta.get('trained_by', 'dfer')}; classifier refitted on FER+ Train and the acted "
                          f"windows of {actors} in {os.path.basename(os.path.normpath(args.frames))} (acted weight {weight:g}, "
                          f"decay {args.decay:g}) by "
                          f"benchmarks/acted_linear_probe.py")
    meta["metrics"] = metrics
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={_META_KEY: json.dumps(meta)})
        os.chmod(tmp, 0o644)


if __name__ == "__main__":
    sys.exit(main())
