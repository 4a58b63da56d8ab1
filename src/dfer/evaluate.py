"""Evaluation: probabilities for every test clip, metrics, and the run's ``results.json``.

With ``eval.num_clips > 1`` each video is seen as several clips (offsets spread over its
segments) whose class probabilities are averaged; ``results.json`` then holds clip-level
and video-level metrics separately. Metrics are computed from the confusion matrix
(:mod:`dfer.metrics`): UAR over the classes present in the test set, WAR, per-class
recall, KL / JS to the annotator vote distribution, expected calibration error, and the
same split by ambiguity (clear: max soft label > 0.9, mixed: the rest).

``dfer evaluate --pretrained --source KIND:PATH`` does the same for the face-expression
model that ships with dfer (:mod:`dfer.pretrained`) on any labelled corpus, written into
``--out``: its own input pipeline (size, grey faces; no face crop unless ``--face-crop``,
corpus images being taken as tight face crops already, as FER+'s are), and its eight FER+
outputs reduced by name to the corpus's classes (the softmax over the shared classes: the
others dropped, the rest renormalised).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dfer.calibration import TTA
from dfer.config import (MAX_BATCH, MAX_FRAMES, MAX_THREADS, DataConfig, EvalConfig, OptimConfig, RunConfig,
                         SourceConfig, arg)
from dfer.data.corpora.registry import KINDS, detect_kind, load_source, option_values
from dfer.data.corpora.synthetic import TRUTH_FILE, read_truth
from dfer.data.dataset import build_loader
from dfer.data.splits import build_splits, make_dataset
from dfer.data.table import ClipKind, ClipTable, SPLIT_NAMES, Split
from dfer.distributed import autocast_dtype, init_distributed, shutdown
from dfer.emotions import BASIC7, label_map
from dfer.errors import ConfigError, DataError
from dfer.inference import predict_loader, shard_rows
from dfer.io import atomic_path, claim_folder, shared_folder, single_component, write_text_atomic
from dfer.metrics import clear_mask, confusion_matrix, kl_divergence, summarise, uar, war
from dfer.predict import PredictConfig, input_transform, load_model, make_detector, predict_file
from dfer.preprocess.align import FACE_FRACTION
from dfer.preprocess.pipeline import recorded_preprocessing
from dfer.rundir import (RUN_KIND, claim_evaluation_folder, evaluation_files, is_earlier_run, load_run,
                         refuse_folders_in_the_way)


@torch.no_grad()
def predict_table(model, table: ClipTable, cfg: RunConfig, device, *, dist_info=None,
                  num_clips: int | None = None, transform=None) -> np.ndarray:
    """(N, C) float64 class probabilities for every clip of ``table`` (video level: the
    mean over ``num_clips`` clips per video). In a distributed run each process predicts a
    shard and every process returns the whole array. ``transform`` replaces the test
    transform of ``cfg`` (a model with its own input pipeline, e.g. the shipped one)."""
    num_clips = num_clips or cfg.eval.num_clips
    shard = shard_rows(len(table), dist_info)
    part = table.take(shard) if len(shard) < len(table) else table
    ds = make_dataset(part, cfg, train=False, num_clips=num_clips, transform=transform)
    loader = build_loader(ds, cfg.eval.batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                          seed=cfg.seed, epoch=0, drop_last=False)
    out = predict_loader(model, loader, shard, device, autocast_dtype(cfg, device), dist_info)
    C = len(table.classes)
    idx = out.rows
    probs = torch.from_numpy(out.probs).mean(1).double().numpy() if out.probs is not None else np.zeros((0, C))
    full = np.full((len(table), C), np.nan)
    full[idx] = probs
    if np.isnan(full).any():
        raise RuntimeError("evaluation missed some clips")  # a bug, not user data
    return full


def evaluate_model(model, table: ClipTable, cfg: RunConfig, device, *, dist_info=None,
                   run_dir: Path | None = None, tag: str = "", transform=None, extra: dict | None = None,
                   probabilities: np.ndarray | None = None) -> dict:
    """Predict ``table``, compute every metric, write results(.tag).json, confusion(.tag).png
    and predictions(.tag).csv into ``run_dir`` (main process only). Returns the results.

    ``transform``: see :func:`predict_table`; ``extra``: entries added to the results
    (e.g. what model was evaluated); ``probabilities``: (N, C) clip distributions made
    elsewhere (the shipped model through ``dfer predict``'s path): ``model`` is then unused."""
    if run_dir is not None:
        refuse_folders_in_the_way(run_dir, evaluation_files(tag), "dfer evaluate")
    t0 = time.perf_counter()
    probs = (predict_table(model, table, cfg, device, dist_info=dist_info, transform=transform)
             if probabilities is None else np.asarray(probabilities, np.float64))
    seconds = time.perf_counter() - t0
    if dist_info is not None and not dist_info.is_main:
        return {}
    labels = table.hard_labels()
    has_votes = table.has_votes
    soft = table.soft_labels() if (has_votes.all() or (table.label >= 0).all()) else None
    results = summarise(probs, labels, table.classes, soft_labels=soft, has_votes=has_votes)
    results["num_clips_per_video"] = cfg.eval.num_clips
    results["eval_seconds"] = seconds
    if soft is not None and has_votes.any():
        clear = clear_mask(soft)
        results["by_ambiguity"] = {
            "clear": summarise(probs[clear], labels[clear], table.classes, soft_labels=soft[clear],
                               has_votes=has_votes[clear]),
            "mixed": summarise(probs[~clear], labels[~clear], table.classes, soft_labels=soft[~clear],
                               has_votes=has_votes[~clear]),
        }
    results.update(_against_synthetic_truth(table, probs))
    results["classes"] = list(table.classes)
    results.update(extra or {})
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        results_name, predictions_name, confusion_name = evaluation_files(tag)
        _write_json(run_dir / results_name, results)
        _write_predictions(run_dir / predictions_name, table, probs)
        from dfer.plots import plot_confusion

        plot_confusion(np.asarray(results["confusion_matrix"]), table.classes, run_dir / confusion_name)
    return results


def _against_synthetic_truth(table: ClipTable, probs: np.ndarray) -> dict:
    """On a synthetic corpus (its side file holds the true expression mixtures): KL from the
    true mixture to the prediction, and UAR/WAR against the true principal emotion."""
    root = table.meta.get("root")
    if not root or not (Path(root) / TRUTH_FILE).is_file() or set(table.classes) != set(BASIC7):
        return {}
    truth = read_truth(root)
    row = {str(v): i for i, v in enumerate(truth["video_name"])}
    idx = np.array([row.get(str(c).split("#")[0], -1) for c in table.clip_id])
    if (idx < 0).any():
        return {}
    order = [BASIC7.index(c) for c in table.classes]
    mixture = truth["mixture"][idx][:, order]
    true = np.array([table.classes.index(BASIC7[t]) for t in truth["true_label"][idx]])
    cm = confusion_matrix(true, probs.argmax(1), len(table.classes))
    return {"kl_to_truth": float(np.mean(kl_divergence(mixture, probs))),
            "uar_true_emotion": uar(cm), "war_true_emotion": war(cm)}


def _write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, default=_jsonable, allow_nan=False))


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _write_predictions(path: Path, table: ClipTable, probs: np.ndarray) -> None:
    import csv

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip_id", "label", "pred", *table.classes])
        labels = table.hard_labels()
        for cid, lab, p in zip(table.clip_id, labels, probs):
            w.writerow([cid, table.classes[lab] if lab >= 0 else "", table.classes[int(p.argmax())],
                        *(f"{x:.6f}" for x in p)])


class _SharedClasses(torch.nn.Module):
    """A model's logits for some of its classes, in another class order.

    The softmax of the selected logits is the model's distribution over those classes
    renormalised: ``softmax(z)[i] / sum_j softmax(z)[j]`` over the kept ``j``.
    """

    def __init__(self, model: torch.nn.Module, index: list[int]):
        super().__init__()
        self.model = model
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long), persistent=False)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """clip float (B, T, C, H, W) -> logits (B, len(index))."""
        return self.model(clip)[..., self.index]


def _as_predict_sees_them(table: ClipTable) -> bool:
    """Whether every clip is a video or a frame folder whose ``dfer preprocess`` report gives
    its frame rate and framing (other frame folders, DFEW's, keep the loader's path)."""
    return all(k == ClipKind.VIDEO or (k == ClipKind.FRAMES and recorded_preprocessing(s) is not None)
               for s, k in zip(table.source, table.kind))


def predict_clips(table: ClipTable, bundle, config, index: list[int]) -> tuple[np.ndarray, list[str]]:
    """(N, len(index)) clip distributions of a model bundle over the videos and frame folders
    of ``table``, each exactly as ``dfer predict`` answers for it (``summary.mean_probabilities``
    of :func:`dfer.predict.predict_file`), reduced to the classes ``index`` and renormalised;
    and the ids of the clips where no face was found (their rows are NaN: no answer).

    A frame folder is taken as aligned faces (``dfer preprocess`` output) at the frame rate
    its preprocessing recorded (``report.json`` above it), cut to the bundle's framing from
    the face fraction it was aligned with.
    """
    detector = make_detector(config)
    aligned = replace(config, aligned=True)
    out = np.full((len(table), len(index)), np.nan)
    unanswered = []
    for i, (clip_id, source, kind) in enumerate(zip(table.clip_id, table.source, table.kind)):
        if kind == ClipKind.FRAMES:
            recorded = recorded_preprocessing(source)
            if recorded is None:
                raise DataError(f"{source}: a frame folder without the frame rate dfer preprocess records "
                                f"(report.json above it): its windows cannot be placed in time")
            fps, face_fraction = recorded
            report = predict_file(source, _reframed(bundle, face_fraction, source), aligned, fps=fps)
        else:
            report = predict_file(source, bundle, config, detector)
        mean = report["summary"].get("mean_probabilities")
        if report["status"] != "ok" or mean is None:
            unanswered.append(str(clip_id))
            continue
        p = np.asarray(mean, np.float64)[index]
        out[i] = p / p.sum()
    return out, unanswered


def _reframed(bundle, face_fraction: float, source: str):
    """``bundle`` with the centred crop that gives its framing from faces aligned at
    ``face_fraction`` (``dfer predict`` aligns at :data:`dfer.preprocess.align.FACE_FRACTION`)."""
    crop = bundle.face_crop * face_fraction / FACE_FRACTION
    if crop > 1 + 1e-6:
        raise DataError(f"{source}: aligned with face fraction {face_fraction:g}, a tighter framing than the model's "
                        f"({FACE_FRACTION * 1 / bundle.face_crop:.4g}); preprocess again with --face-fraction "
                        f"{FACE_FRACTION:g}")
    return bundle if abs(crop - bundle.face_crop) < 1e-9 else replace(bundle, face_crop=min(1.0, crop))


def class_index(model_classes, corpus_classes) -> list[int]:
    """Index in ``model_classes`` of each of ``corpus_classes``, by name.

    Raises:
        ConfigError: the corpus has a class the model cannot predict.
    """
    m = label_map(tuple(corpus_classes), tuple(model_classes))
    lacking = [c for c, i in zip(corpus_classes, m) if i < 0]
    if lacking:
        raise ConfigError(f"the corpus has classes {lacking} that the model cannot predict (its classes: "
                          f"{list(model_classes)}); evaluate it on a corpus whose classes are among them")
    return [int(i) for i in m]


def parse_source(spec: str) -> tuple[str | None, str]:
    """``KIND:PATH`` -> (kind, path); a bare path -> (None, path): the kind is detected.

    Raises:
        ConfigError: ``KIND`` is not a corpus kind, or the path is empty.
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        if not rest:
            raise ConfigError(f"--source {spec!r}: no path after {kind}:")
        return kind, rest
    if sep and len(kind) > 1 and kind.replace("_", "").isalnum() and not Path(spec).exists():
        raise ConfigError(f"--source {spec!r}: corpus kind {kind!r} unknown; expected KIND:PATH with KIND one of "
                          f"{', '.join(KINDS)}, or a path alone")
    if not spec:
        raise ConfigError("--source is empty; expected KIND:PATH or a path")
    return None, spec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Evaluate a finished run on its test clips or on another corpus (--source); or, with "
                     "--pretrained, the face-expression model that ships with dfer on any labelled corpus, e.g. "
                     "dfer evaluate --pretrained --source ferplus:/data/FERPlus --split val. Writes results.json, "
                     "predictions.csv and confusion.png.")
    p.add_argument("run", nargs="?", help="run directory written by dfer train (not with --pretrained)")
    p.add_argument("--pretrained", action="store_true",
                   help="evaluate the face-expression model that ships with dfer (FER+ ResNet-18) instead of a run, "
                        "with its own preprocessing: its input size and grey faces, and no face crop (corpus images "
                        "are taken to be tight face crops already, as FER+'s are; see --face-crop). Its eight FER+ "
                        "outputs are matched to the "
                        "corpus's classes by name: for a basic-7 corpus contempt is dropped and the other seven "
                        "renormalised. Needs --source; writes into --out")
    p.add_argument("--checkpoint", choices=["last", "best"], help="default: the run's own selection rule")
    p.add_argument("--num-clips", type=arg(int, range="[1, inf)", limit=MAX_FRAMES), help="clips per video (default: the run's eval.num_clips; 1 with "
                                                 "--pretrained)")
    p.add_argument("--source", metavar="KIND:PATH",
                   help="evaluate on another corpus: KIND:PATH (e.g. afew:/data/AFEW, ferplus:/data/FERPlus), or "
                        "PATH alone to detect the kind")
    p.add_argument("--split", default=None, help="split of --source to use: train, val, test or all (default test; "
                                                 "AFEW: val; all: every clip, for corpora without splits such as "
                                                 "the acted ones)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of --source's corpus kind, e.g. -o folds=4 (repeatable)")
    p.add_argument("--fold", type=arg(int, range="[1, inf)"), default=None, help="fold of --source to use as test set")
    p.add_argument("--ties", choices=["drop", "first", "random"], default=None,
                   help="hard label of a clip whose top votes tie: first (in class order), random or drop (default "
                        "with --pretrained: first, as FER+'s majority-vote accuracy counts them; for a run: the run's "
                        "data.ties, and unset such clips count only in the divergences to the votes)")
    p.add_argument("--face-crop", action="store_true",
                   help="with --pretrained: cut each image to the model's face crop first, as dfer predict does, for a "
                        "corpus of whole aligned faces (dfer preprocess output, DFEW's frames) rather than tight crops")
    p.add_argument("--out", help="with --pretrained: output folder (default runs/pretrained_KIND-SPLIT)")
    p.add_argument("--batch-size", type=arg(int, range="[1, inf)", limit=MAX_BATCH), help="with --pretrained: clips per forward pass (default 64)")
    p.add_argument("--workers", type=arg(int, range="[0, inf)", limit=MAX_THREADS), help="with --pretrained: loader processes (default 2)")
    p.add_argument("--prior-correction", type=arg(float, range="[0, 2]"), metavar="TAU",
                   help="with --pretrained: divide the training class prior out of the answer with this strength "
                        "(0: the model as trained; default: the model file's own rule)")
    p.add_argument("--tta", choices=TTA, help="with --pretrained: test-time augmentation, none or flip (the mean of "
                                              "the logits of a face and its mirror image; default: the file's rule)")
    p.add_argument("--tag", default="", help="suffix for the written files (results.TAG.json)")
    p.add_argument("--device", default="auto")


def _source_table(spec: str, split: str | None, fold: int | None, classes=None,
                  options: list[str] | None = None) -> tuple[ClipTable, str, str]:
    """(table of the chosen part of ``--source``, kind, part name); ``classes`` re-indexes it;
    ``options``: ``KEY=VALUE`` options of the corpus kind."""
    kind, root = parse_source(spec)
    kind = kind or detect_kind(root)
    part = split or ("val" if kind == "afew" else "test")
    extra = option_values(kind, options) if options else {}
    if fold is None and part == "all":
        table = load_source(kind, root, **extra)
        table = table.to_classes(classes) if classes is not None else table
        if len(table) == 0:
            raise DataError(f"{root}: no clips in this {kind} corpus")
        return table, kind, "all"
    if fold is None:
        code = SPLIT_NAMES.get(part.strip().lower())
        if code not in (Split.TRAIN, Split.VAL, Split.TEST):
            raise ConfigError(f"--split must be train, val or test, got {part!r}")
        part = {Split.TRAIN: "train", Split.VAL: "val", Split.TEST: "test"}[code]
    # FER+ reads (and checks) only the split asked for: its train folder holds 28k images
    options = {"splits": [part]} if kind == "ferplus" and fold is None else {}
    table = load_source(kind, root, **{**options, **extra})
    if classes is not None:
        table = table.to_classes(classes)
    if fold is not None:
        table, part = table.fold_split(fold)[1], f"fold{fold}"
    else:
        table = table.split_part(part)
    if len(table) == 0:
        raise DataError(f"{root}: no clips in the {part} part of this {kind} corpus")
    return table, kind, part


def run(args: argparse.Namespace) -> int:
    if args.tag:  # results.TAG.json: a name inside the output folder, never a way out of it
        single_component(args.tag, "--tag")
    if args.pretrained:
        return _run_pretrained(args)
    if args.run is None:
        raise ConfigError("give a run directory, or --pretrained to evaluate the model that ships with dfer")
    if args.out is not None:
        raise ConfigError("--out goes with --pretrained; a run's results are written into its run directory")
    if args.batch_size is not None or args.workers is not None or args.face_crop:
        raise ConfigError("--batch-size, --workers and --face-crop go with --pretrained; a run uses its config's "
                          "eval.batch_size, data.num_workers and its own framing")
    if args.prior_correction is not None or args.tta is not None:
        raise ConfigError("--prior-correction and --tta go with --pretrained: the rule a shipped model file answers "
                          "with; a run answers with its logits as trained")
    if (args.split is not None or args.fold is not None) and not args.source:
        raise ConfigError("--split and --fold choose a part of --source; without --source a run is evaluated on "
                          "the test clips of its own config")
    if args.num_clips is not None and args.num_clips < 1:
        raise ConfigError(f"--num-clips must be >= 1, got {args.num_clips}")
    # a folder not dfer's is refused before anything (the lock) is written into it
    claim_folder(args.run, RUN_KIND, "dfer evaluate", is_earlier_run, create=False)
    # a run still training is refused: its results would not be final, and it writes where these go
    with shared_folder(args.run, "dfer evaluate"):
        return _run_of(args)


def _run_of(args: argparse.Namespace) -> int:
    """``dfer evaluate RUN``: the run's model on its test clips (or ``--source``'s)."""
    model, cfg, classes = load_run(args.run, which=args.checkpoint)
    info, device = init_distributed(args.device)  # under torchrun the clips are sharded over the ranks
    # results go into the run's folder: one of dfer's runs (every rank checks, the main one marks)
    claim_folder(args.run, RUN_KIND, "dfer evaluate", is_earlier_run, create=info.is_main)
    model = model.to(device)
    if args.num_clips:
        cfg.eval.num_clips = args.num_clips
    if args.ties:
        cfg.data.ties = args.ties
    if args.source:
        table, kind, _ = _source_table(args.source, args.split, args.fold, classes, args.option)
        table = table.resolve_labels(cfg.data.ties, cfg.seed, f"{args.source} (test clips)", required=False)
        tag = args.tag or kind
    else:
        table = build_splits(cfg).test
        tag = args.tag
    try:
        res = evaluate_model(model, table, cfg, device, dist_info=info, run_dir=Path(args.run), tag=tag)
    finally:
        shutdown()
    if not info.is_main:
        return 0
    print(f"{args.run}: UAR {100 * (res['uar'] or 0):.2f}% WAR {100 * (res['war'] or 0):.2f}% "
          f"on {res['num_clips']} clips" + (f" (results.{tag}.json)" if tag else ""))
    return 0


def _as_predict_answers(table: ClipTable, bundle, index: list[int], args, extra: dict
                        ) -> tuple[ClipTable, np.ndarray]:
    """Videos and dfer preprocess's frame folders: each clip's distribution as ``dfer predict``
    answers for it (:func:`predict_clips`); clips without a face are left out of the scores
    and listed in ``extra``. Returns the scored clips and their distributions."""
    given = [flag for flag, value in (("--face-crop", args.face_crop), ("--num-clips", args.num_clips),
                                      ("--batch-size", args.batch_size), ("--workers", args.workers)) if value]
    if given:
        raise ConfigError(f"{', '.join(given)}: videos and dfer preprocess's frame folders are evaluated "
                          f"as dfer predict sees them (its framing, windows and clip answer); these options "
                          f"are for still images and other frame folders")
    t0 = time.perf_counter()
    probs, unanswered = predict_clips(table, bundle, PredictConfig(threads=torch.get_num_threads()), index)
    extra["eval_seconds"] = time.perf_counter() - t0
    extra["preprocessing"] = {**extra["preprocessing"], "face_crop": bundle.face_crop,
                              "path": "dfer predict (face detection and alignment of a video, or a folder of "
                                      "aligned frames; windows; the mean of the windows' distributions)"}
    extra["clips_without_face"] = unanswered
    if not unanswered:
        return table, probs
    # no face, no answer: such a clip is not scored (listed, and said)
    keep = ~np.isin(table.clip_id.astype(str), unanswered)
    print(f"dfer evaluate: {len(unanswered)} clip(s) without a face are not scored (listed in "
          f"results.json): {', '.join(unanswered[:3])}{' ...' if len(unanswered) > 3 else ''}")
    if not keep.any():
        raise DataError(f"--source {args.source}: no face found in any of the {len(table)} clips")
    return table.take(keep), probs[keep]


def _run_pretrained(args: argparse.Namespace) -> int:
    if args.run is not None:
        raise ConfigError(f"--pretrained evaluates the model that ships with dfer; drop the run directory "
                          f"{args.run!r} (or drop --pretrained)")
    if args.checkpoint is not None:
        raise ConfigError("--checkpoint chooses a run's checkpoint; it does not go with --pretrained")
    if not args.source:
        raise ConfigError("--pretrained needs a labelled corpus: --source KIND:PATH (e.g. ferplus:/data/FERPlus)")
    batch_size = 64 if args.batch_size is None else args.batch_size
    workers = 2 if args.workers is None else args.workers
    if batch_size < 1 or workers < 0:
        raise ConfigError(f"--batch-size must be >= 1 and --workers >= 0, got {batch_size} and {workers}")
    if args.out is not None:  # refused before the corpus is read (a Kaggle FER+ source writes its cache)
        claim_evaluation_folder(args.out, create=False)
    # the model first: a broken install is reported before a large corpus is read
    bundle = load_model(pretrained=True, device=args.device, prior_correction=args.prior_correction, tta=args.tta)
    table, kind, part = _source_table(args.source, args.split, args.fold, options=args.option)
    table = table.resolve_labels(args.ties or "first", 0, f"{args.source} ({part} clips)")
    index = class_index(bundle.classes, table.classes)
    model = _SharedClasses(bundle.model, index).to(bundle.device).eval()
    # a still image is one frame: sampling it num_frames times would only repeat the same work
    stills = bool((table.kind == ClipKind.IMAGE).all())
    # the card's figures are fp32; autocast on a GPU would measure another model
    cfg = RunConfig(name=f"pretrained_{kind}-{part}", seed=0,
                    data=DataConfig(source=SourceConfig(kind=kind, root=args.source),
                                    num_frames=1 if stills else bundle.num_frames,
                                    size=bundle.size, num_workers=workers, ties=args.ties or "first"),
                    optim=OptimConfig(precision="fp32"),
                    eval=EvalConfig(num_clips=args.num_clips or 1, batch_size=batch_size))
    out = Path(args.out or Path("runs") / cfg.name)
    dropped = [c for c in bundle.classes if c not in {bundle.classes[i] for i in index}]
    extra = {"model": dict(bundle.source),
             "source": {"kind": kind, "spec": args.source, "part": part, "ties": cfg.data.ties},
             "class_map": {"model_classes": list(bundle.classes), "corpus_classes": list(table.classes),
                           "dropped": dropped, "rule": "softmax over the shared classes (dropped ones "
                                                        "removed, the rest renormalised)"},
             "preprocessing": {"size": bundle.size, "grey": bundle.grey,
                               "face_crop": bundle.face_crop if args.face_crop else None,
                               "mean": list(bundle.mean), "std": list(bundle.std)}}
    probs = None
    if not stills and (table.kind == ClipKind.IMAGE).any():
        raise ConfigError(f"--source {args.source}: a mix of still images and videos; evaluate them apart")
    if not stills and _as_predict_sees_them(table):
        table, probs = _as_predict_answers(table, bundle, index, args, extra)
    claim_evaluation_folder(out)
    res = evaluate_model(model, table, cfg, bundle.device, run_dir=out, tag=args.tag,
                         transform=input_transform(bundle, face_crop=args.face_crop), extra=extra,
                         probabilities=probs)
    suffix = f".{args.tag}" if args.tag else ""
    note = f", {'/'.join(dropped)} dropped" if dropped else ""
    print(f"dfer's FER+ model on {kind} {part}: UAR {100 * (res['uar'] or 0):.2f}% WAR {100 * (res['war'] or 0):.2f}% "
          f"on {res['num_clips']} clips{note} -> {out / f'results{suffix}.json'}")
    return 0
