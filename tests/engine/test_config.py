"""Typed config loading: YAML layers, --set overrides, unknown keys, type checks, YAML round trip."""
from __future__ import annotations

from dataclasses import dataclass, field

import engine_toy as T
import pytest

from contrast3d.config import PRESET_DIR, ConfigError, dump_yaml, from_dict, load_yaml, parse_override, to_dict
from contrast3d.engine.config import TrainConfig
from contrast3d.engine.config import load_train_config as _load

BASE = [PRESET_DIR / "pretrain" / "base.yaml"]


def load_train_config(name, spec, presets=False, **kw):
    return _load(name, spec.sections(), presets=BASE if presets else [], **kw)


@dataclass
class Inner:
    lr: float = 0.1
    mode: str = "a"
    sizes: tuple[int, ...] = (1, 2)
    opt: float | None = None


@dataclass
class Outer:
    steps: int = 10
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_override_types_and_nesting():
    cfg = load_train_config("toy", T.SPEC, presets=True,
                            overrides=["optim.lr=0.05", "loader.batch_size=8", "method.dropout=0",
                                       "schedule.milestones=[0.5, 0.9]", "optim.weight_decay=1e-4",
                                       "optim.clip_grad_norm=null", "data.points=7"])
    assert cfg.optim.lr == 0.05 and cfg.loader.batch_size == 8
    assert isinstance(cfg.method, T.ToyConfig) and cfg.method.dropout == 0.0
    assert cfg.schedule.milestones == (0.5, 0.9)
    assert cfg.optim.weight_decay == pytest.approx(1e-4)   # "1e-4" is a str in YAML 1.1
    assert cfg.optim.clip_grad_norm is None
    assert isinstance(cfg.data, T.ToyDataConfig) and cfg.data.points == 7
    assert cfg.method_name == "toy"


def test_unknown_key_names_key_lists_valid_and_suggests():
    with pytest.raises(ConfigError) as err:
        load_train_config("toy", T.SPEC, overrides=["optim.lrr=0.1"])
    msg = str(err.value)
    assert "optim.lrr" in msg and "did you mean 'lr'" in msg and "momentum" in msg and "--set" in msg
    with pytest.raises(ConfigError, match="unknown key 'stepz'.*did you mean 'steps'"):
        load_train_config("toy", T.SPEC, overrides=["stepz=3"])
    with pytest.raises(ConfigError, match="method.dropuot.*did you mean 'dropout'"):
        load_train_config("toy", T.SPEC, overrides=["method.dropuot=0.1"])


def test_type_errors():
    with pytest.raises(ConfigError, match="optim.lr: expected float"):
        load_train_config("toy", T.SPEC, overrides=["optim.lr=fast"])
    with pytest.raises(ConfigError, match="steps: expected int"):
        load_train_config("toy", T.SPEC, overrides=["steps=1.5"])
    with pytest.raises(ConfigError, match="expected int, got True"):
        from_dict(Outer, {"steps": True})
    with pytest.raises(ConfigError, match="expected bool"):
        from_dict(Outer, {"flag": 1})
    with pytest.raises(ConfigError, match="'adam' is not one of.*did you mean 'adamw'"):
        load_train_config("toy", T.SPEC, overrides=["optim.name=adam"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match="optim.lr must be > 0"):
        load_train_config("toy", T.SPEC, overrides=["optim.lr=0"])


def test_yaml_file_layer_and_error_names_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("steps: 42\noptim:\n  name: adamw\n  lr: 0.001\nmethod:\n  ema_base: 0.99\n")
    cfg = load_train_config("toy", T.SPEC, files=[good], overrides=["steps=43"])
    assert (cfg.steps, cfg.optim.name, cfg.optim.lr, cfg.method.ema_base) == (43, "adamw", 0.001, 0.99)
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError) as err:
        load_train_config("toy", T.SPEC, files=[bad])
    assert str(bad) in str(err.value) and "optim.learning_rate" in str(err.value)
    garbled = tmp_path / "garbled.yaml"
    garbled.write_text("steps: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_yaml(garbled)


def test_yaml_round_trip(tmp_path):
    cfg = load_train_config("toy", T.SPEC, overrides=["optim.betas=[0.8, 0.9]", "method.nan_at_step=3"])
    path = tmp_path / "config.yaml"
    dump_yaml(cfg, path)
    again = from_dict(TrainConfig, load_yaml(path), sections=T.SPEC.sections())
    assert again == cfg and to_dict(again) == to_dict(cfg)


def test_generic_union_and_tuple():
    o = from_dict(Outer, {"inner": {"opt": 3, "sizes": [4, 5, 6]}})
    assert o.inner.opt == 3.0 and o.inner.sizes == (4, 5, 6)
    with pytest.raises(ConfigError, match=r"inner.sizes\[1\]"):
        from_dict(Outer, {"inner": {"sizes": [1, "x"]}})
