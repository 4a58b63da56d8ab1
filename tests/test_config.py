"""Config: YAML recipes, overrides, validation, and the paper's hyperparameters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dfer.config import RunConfig, config_hash, dump_config, load_config, saved_config, to_dict
from dfer.errors import ConfigError
from dfer.train import lr_at

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper"


def test_defaults_are_the_papers_section_4_3():
    cfg = RunConfig()
    assert (cfg.model.name, cfg.data.num_frames, cfg.data.size) == ("tsm_resnet18", 8, 224)
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.epochs, cfg.optim.batch_size) == (0.02, 0.9, 450, 8)
    assert cfg.optim.schedule == "cosine" and cfg.model.dropout == 0.5 and cfg.mixing.alpha == 0.4


def test_overrides_go_through_the_same_typed_path(tmp_path):
    cfg = load_config(None, ["optim.lr=0.01", "data.source.fold=3", "label_mode=soft", "data.scales=[1.0, 0.5]",
                             "data.source.options={frames: clip_224x224_16f}", "model.pretrained=false"])
    assert cfg.optim.lr == 0.01 and cfg.data.source.fold == 3 and cfg.label_mode == "soft"
    assert cfg.data.scales == [1.0, 0.5] and cfg.data.source.options == {"frames": "clip_224x224_16f"}
    # the resolved config round-trips through YAML unchanged
    dump_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg and config_hash(again) == config_hash(cfg)


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=0.1", r"unknown key\(s\) \['lrr'\]"),
    ("optim.lr=abc", r"config\.optim\.lr: expected a number, got 'abc'"),
    ("optim.epochs=2.5", r"expected an integer"),
    ("label_mode=fuzzy", r"label_mode must be hard, soft, midas, midas-hard or mixup, got 'fuzzy'"),
    ("eval.select=best_val", r"needs data.val_fraction > 0 or data.source.val_split: the test fold never selects"),
    ("data.on_bad_clip=ignore", r"on_bad_clip must be 'error' or 'skip'"),
    ("mixing.alpha=0", r"mixing.alpha must be > 0"),
    ("optimlr", r"not of the form key.sub=value"),
    ("data.crop=zoom", r"data\.crop must be scale or pad, got 'zoom'"),
    ("data.pad=-1", r"data\.pad must be >= 0, got -1"),
    ("data.pad=2.5", r"config\.data\.pad: expected an integer"),
    ("data.ties=majority", r"data\.ties must be drop, first or random \(or unset\), got 'majority'"),
    ("data.ties=true", r"data\.ties"),
    ("data.erase=1.5", r"data\.erase must be a probability in \[0, 1\], got 1\.5"),
    ("data.erase=-0.1", r"data\.erase must be a probability in \[0, 1\], got -0\.1"),
    ("data.erase_scale=[0.3, 0.1]", r"data\.erase_scale must be two fractions in \(0, 1\], low <= high, "
                                    r"got \[0\.3, 0\.1\]"),
    ("data.erase_scale=[0.1]", r"data\.erase_scale must be two fractions"),
    ("data.erase_scale=[0, 0.2]", r"data\.erase_scale must be two fractions"),
    ("data.erase_scale=[0.1, 1.5]", r"data\.erase_scale must be two fractions"),
    ("data.rotate=-5", r"data\.rotate must be degrees in \[0, 180\], got -5\.0"),
    ("data.rotate=361", r"data\.rotate must be degrees in \[0, 180\], got 361\.0"),
    ("data.scale_jitter=1", r"data\.scale_jitter must be in \[0, 1\), got 1\.0"),
    ("data.jitter=1.2", r"data\.jitter must be in \[0, 1\], got 1\.2"),
    ("data.jitter=strong", r"config\.data\.jitter: expected a number, got 'strong'"),
    # numbers outside the range in which they mean something
    ("eval.every=0", r"eval\.every must be >= 1, got 0"),
    ("log_every=0", r"log_every must be >= 1, got 0"),
    ("threads=-1", r"threads must be >= 0 \(0: torch's default\), got -1"),
    ("seed=-5", r"seed must be an integer in \[0, 2\^32\), got -5"),
    ("seed=99999999999999999999999", r"seed must be an integer in \[0, 2\^32\)"),
    ("optim.grad_clip=-1", r"optim\.grad_clip must be > 0, or null for none, got -1\.0"),
    ("optim.warmup_epochs=-1", r"optim\.warmup_epochs must be in \[0, optim\.epochs=450\], got -1\.0"),
    ("eval.num_clips=0", r"eval\.num_clips must be >= 1, got 0"),
    ("device=tpu", r"device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("device=cuda:x", r"device must be auto, cpu, cuda or cuda:N"),
    ("model.dropout=1", r"model\.dropout must be in \[0, 1\)"),
    ("mixing.normalise=soft", r"mixing\.normalise must be none, softmax or renormalise, got 'soft'"),
    ("mixing.temperature=0", r"mixing\.temperature must be > 0"),
    ("data.num_workers=-2", r"data\.num_workers must be >= 0"),
    ("data.scales=[1.5]", r"data\.scales must be fractions in \(0, 1\]"),
    ("optim.momentum=1", r"optim\.momentum must be in \[0, 1\)"),
    ("optim.lr=[1, 2", r"override 'optim\.lr=\[1, 2': cannot parse value: [^\n]*$"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_validation_split_comes_from_the_adapter_or_a_fraction_not_both():
    fixed = ["data.source.fold=null"]  # a fixed split (FER+ Valid), not a cross-validation fold
    cfg = load_config(None, fixed + ["data.source.val_split=val", "eval.select=best_val"])  # FER+ Valid selects
    assert cfg.data.source.val_split == "val" and cfg.eval.select == "best_val"
    assert load_config(None, ["data.val_fraction=0.1", "eval.select=best_val"]).data.source.val_split is None
    with pytest.raises(ConfigError, match=r"set data\.val_fraction or data\.source\.val_split, not both"):
        load_config(None, fixed + ["data.source.val_split=val", "data.val_fraction=0.1"])
    with pytest.raises(ConfigError, match=r"val_split needs data\.source\.fold: null"):
        load_config(None, ["data.source.val_split=val"])
    with pytest.raises(ConfigError, match=r"overlaps the training clips"):
        load_config(None, fixed + ["data.source.val_split=train"])
    with pytest.raises(ConfigError, match=r"would select on the test clips"):
        load_config(None, fixed + ["data.source.val_split=test", "eval.select=best_val"])
    # monitoring the test split every epoch selects nothing with eval.select=last
    assert load_config(None, fixed + ["data.source.val_split=test"]).eval.select == "last"
    with pytest.raises(ConfigError, match=r"needs data\.val_fraction > 0 or data\.source\.val_split"):
        load_config(None, ["eval.select=best_val"])


def test_still_face_settings_and_their_defaults():
    cfg = RunConfig()
    assert (cfg.data.crop, cfg.data.pad, cfg.data.ties, cfg.optim.nesterov) == ("scale", 4, None, False)
    cfg = load_config(None, ["data.crop=pad", "data.pad=0", "data.ties=random", "optim.nesterov=true"])
    assert (cfg.data.crop, cfg.data.pad, cfg.data.ties, cfg.optim.nesterov) == ("pad", 0, "random", True)
    recipe = load_config(ROOT / "configs" / "ferplus" / "still_face.yaml")
    assert (recipe.data.crop, recipe.data.ties, recipe.data.source.val_split) == ("pad", "first", "val")
    assert load_config(None, ["data.ties=first", "data.ties=null"]).data.ties is None  # unset again


def test_the_stronger_augmentation_is_off_unless_asked_for_and_names_its_runs():
    augment = ("erase", "rotate", "scale_jitter", "jitter")
    for cfg in (RunConfig(), load_config(ROOT / "configs" / "ferplus" / "still_face.yaml")):
        assert [getattr(cfg.data, k) for k in augment] == [0, 0, 0, 0] and cfg.data.erase_scale == [0.02, 0.25]
        assert "aug" not in cfg.run_name()
    plain = to_dict(load_config(ROOT / "configs" / "ferplus" / "still_face.yaml"))
    strong = load_config(ROOT / "configs" / "ferplus" / "still_face_strong_aug.yaml")
    assert [getattr(strong.data, k) for k in augment] == [0.5, 10, 0.1, 0.2]
    assert {**to_dict(strong), "data": {**to_dict(strong)["data"], **{k: 0.0 for k in augment}}} == plain
    assert strong.run_name() == "tsm_resnet18_soft_aug-e0.5-r10-s0.1-j0.2_ferplus-test"
    cfg = load_config(None, ["data.erase=0.25", "data.erase_scale=[0.1, 0.1]"])
    assert cfg.run_name() == "tsm_resnet18_midas-a0.4_aug-e0.25_dfew-fold1" and cfg.data.erase_scale == [0.1, 0.1]


def test_bad_yaml_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"config file .*missing\.yaml not found"):
        load_config(tmp_path / "missing.yaml")


def test_a_base_that_is_not_one_file_name_is_refused(tmp_path):
    (tmp_path / "r.yaml").write_text("base: [a.yaml, b.yaml]\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: 'base' must be one file name, got \['a\.yaml', 'b\.yaml'\]"):
        load_config(tmp_path / "r.yaml")


def test_base_files_merge_and_cycles_are_caught(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\noptim: {lr: 0.5}\n")
    (tmp_path / "b.yaml").write_text("optim: {lr: 0.1, epochs: 7}\n")
    cfg = load_config(tmp_path / "a.yaml")
    assert (cfg.optim.lr, cfg.optim.epochs) == (0.5, 7)
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_run_name_encodes_the_protocol():
    cfg = load_config(None, ["data.source.fold=3"])
    assert cfg.run_name() == "tsm_resnet18_midas-a0.4_dfew-fold3"
    assert load_config(None, ["label_mode=hard"]).run_name() == "tsm_resnet18_hard_dfew-fold1"
    assert cfg.run_name(cv=True) == "tsm_resnet18_midas-a0.4_dfew-cv"  # whichever fold


def test_no_two_recipes_share_a_run_or_cv_name():
    """Two protocols in one folder would be refused as "a different config" (or mixed)."""
    from dfer.experiments import cv_name

    from dfer.config import config_hash

    recipes = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if not p.name.startswith("_"))
    cfgs = {p.relative_to(ROOT / "configs"): load_config(p) for p in recipes}
    assert len(cfgs) > 20
    for name in (lambda c: c.run_name(), cv_name):
        protocols = {}  # where a run would go -> the configs that would go there
        for path, c in cfgs.items():
            protocols.setdefault((c.out_dir, name(c)), set()).add(config_hash(c))
        # recipes that share a folder are one recipe (rdfer/tsm_hard.yaml is paper/table2_tsm_hard.yaml)
        assert all(len(h) == 1 for h in protocols.values()), [k for k, h in protocols.items() if len(h) > 1]
    clear = cfgs[Path("paper/table6_clear.yaml")]
    assert clear.run_name() == "tsm_resnet18_soft_dfew-clear-fold1" and cv_name(clear) == "tsm_resnet18_soft_dfew-clear-cv"


@pytest.mark.parametrize("recipe", sorted(p.relative_to(ROOT / "configs").as_posix()
                                           for p in (ROOT / "configs").rglob("*.yaml")))
def test_every_shipped_recipe_reads_and_its_settings_are_accepted(recipe):
    """Bases (``_dfew.yaml``) included: each passes every declared range, choice and rule."""
    cfg = load_config(ROOT / "configs" / recipe)
    assert isinstance(cfg, RunConfig) and cfg.validate() is cfg


def test_every_setting_declares_what_it_accepts_or_is_free_text_or_a_switch():
    """A number or a word of a fixed set without a declaration would be checked nowhere."""
    import dataclasses
    import typing

    from dfer.config import DataConfig, EvalConfig, MixingConfig, ModelConfig, OptimConfig, RobustConfig, SourceConfig

    free = {"SourceConfig.root", "SourceConfig.train_split", "SourceConfig.test_split", "SourceConfig.val_split",
            "SourceConfig.kind", "DataConfig.classes", "ModelConfig.name", "ModelConfig.pretrained",
            "OptimConfig.warmup_epochs", "RobustConfig.truth"}  # checked by their class's rules
    for cls in (RunConfig, SourceConfig, DataConfig, ModelConfig, OptimConfig, MixingConfig, EvalConfig, RobustConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if tp is bool or dataclasses.is_dataclass(tp) or tp is dict or typing.get_origin(tp) is dict:
                continue
            if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
                continue
            if typing.get_args(tp) and all(dataclasses.is_dataclass(a) or a is type(None) for a in typing.get_args(tp)):
                continue
            assert "accepts" in f.metadata or f"{cls.__name__}.{f.name}" in free, f"{cls.__name__}.{f.name}"


def test_cosine_schedule_endpoints_and_warmup():
    assert lr_at(0, 100, 0.02) == pytest.approx(0.02)
    assert lr_at(50, 100, 0.02) == pytest.approx(0.01)
    assert lr_at(100, 100, 0.02) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(0, 100, 0.02, warmup_steps=10) == pytest.approx(0.002)
    assert lr_at(9, 100, 0.02, warmup_steps=10) == pytest.approx(0.02)
    lrs = [lr_at(s, 100, 0.02, warmup_steps=10) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lr_at(40, 100, 0.02, schedule="constant") == 0.02
    assert lr_at(55, 100, 1.0, warmup_steps=10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))


# ---------------------------------------------------------------- the paper's recipes

#: recipe -> (label mode, model, lr, kind) as the MIDAS paper states them
PAPER_ROWS = {
    "table2_tsm_hard.yaml": ("hard", "tsm_resnet18", 0.02, "dfew"),
    "table2_tsm_soft.yaml": ("soft", "tsm_resnet18", 0.02, "dfew"),
    "table2_tsm_midas.yaml": ("midas", "tsm_resnet18", 0.02, "dfew"),
    "table3_tsm_midas-hard.yaml": ("midas-hard", "tsm_resnet18", 0.02, "dfew"),
    "table4_ferv39k_midas-hard.yaml": ("midas-hard", "tsm_resnet18", 0.01, "ferv39k"),
    "table5_afew_hard.yaml": ("hard", "tsm_resnet18", 0.02, "dfew"),
    "table5_afew_soft.yaml": ("soft", "tsm_resnet18", 0.02, "dfew"),
    "table5_afew_midas.yaml": ("midas", "tsm_resnet18", 0.02, "dfew"),
    "table6_clear.yaml": ("soft", "tsm_resnet18", 0.02, "dfew"),
    "table6_mixed.yaml": ("soft", "tsm_resnet18", 0.02, "dfew"),
    "table7_gru_hard.yaml": ("hard", "resnet18_gru", 0.02, "dfew"),
    "table7_gru_soft.yaml": ("soft", "resnet18_gru", 0.02, "dfew"),
    "table7_gru_midas.yaml": ("midas", "resnet18_gru", 0.02, "dfew"),
    "table1_r3d_hard.yaml": ("hard", "r3d_18", 0.02, "dfew"),
}


def test_every_paper_recipe_is_listed_here():
    assert sorted(p.name for p in PAPER.glob("table*.yaml")) == sorted(PAPER_ROWS)


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_paper_recipe_matches_the_papers_hyperparameters(name):
    cfg = load_config(PAPER / name, ["data.source.root=/data/X"])
    mode, model, lr, kind = PAPER_ROWS[name]
    assert (cfg.label_mode, cfg.model.name, cfg.optim.lr, cfg.data.source.kind) == (mode, model, lr, kind)
    # section 4.3, shared by every row
    assert cfg.optim.name == "sgd" and cfg.optim.momentum == 0.9 and cfg.optim.epochs == 450
    assert cfg.optim.batch_size == 8
    assert cfg.optim.schedule == "cosine" and cfg.model.dropout == 0.5 and cfg.model.pretrained is True
    assert cfg.mixing.alpha == 0.4 and cfg.eval.select == "last"
    if model != "r3d_18":
        assert (cfg.data.num_frames, cfg.data.size) == (8, 224)
    if name.startswith("table5"):
        assert cfg.data.test_source is not None and cfg.data.test_source.kind == "afew"
        assert cfg.data.test_source.test_split == "val"
    if name.startswith("table6"):
        assert cfg.data.train_subset == name.split("_")[1].split(".")[0]


def test_a_config_saved_before_a_setting_existed_hashes_like_the_same_config_today():
    cfg = load_config(None, ["optim.lr=0.01", "robust.enabled=true", "robust.hard_weight=1"])
    old = to_dict(cfg)
    del old["robust"]["max_frames"], old["data"]["scales"]  # as if saved before these settings were added
    for key in ("erase", "erase_scale", "rotate", "scale_jitter", "jitter"):
        del old["data"][key]
    assert config_hash(saved_config(old)) == config_hash(cfg)
    # a changed value still changes the hash; a key dfer no longer knows does not read at all
    changed = to_dict(cfg)
    changed["optim"]["lr"] = 0.02
    assert config_hash(saved_config(changed)) != config_hash(cfg)
    renamed = to_dict(cfg)
    renamed["robust"]["key_temp"] = renamed["robust"].pop("key_temperature")
    with pytest.raises(ConfigError, match="key_temp"):
        saved_config(renamed)
    bad = to_dict(cfg)
    bad["optim"]["epochs"] = -3
    with pytest.raises(ConfigError, match="epochs"):
        saved_config(bad)


def test_numbers_in_e_notation_are_numbers_though_yaml_reads_them_as_text(tmp_path):
    """YAML 1.1 (PyYAML) reads ``1e-3`` as a string; a float setting takes it as 0.001, in an
    override and in a recipe; anything else is still refused."""
    cfg = load_config(None, ["optim.lr=1e-3", "optim.weight_decay=5E-4", "mixing.alpha=+4e-1"])
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.mixing.alpha) == (0.001, 0.0005, 0.4)
    (tmp_path / "r.yaml").write_text("optim:\n  lr: 2e-2\n")
    assert load_config(tmp_path / "r.yaml").optim.lr == 0.02
    with pytest.raises(ConfigError, match=r"optim\.lr: expected a number, got '1e'"):
        load_config(None, ["optim.lr=1e"])
