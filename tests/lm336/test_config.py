"""TrainConfig: TOML/JSON loading, dotted overrides, type conversion and clear errors.

PYTHONPATH=python python -m pytest tests/test_config.py -q
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from testdata import CONFIGS

from lm336.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    config_keys,
    load_config,
)


def test_reference_config_matches_spec():
    cfg = load_config(CONFIGS / "tinystories-17m.toml")
    m = cfg.model
    assert (m.vocab_size, m.context_length, m.d_model, m.d_ff, m.num_layers, m.num_heads) == (
        10_000,
        256,
        512,
        1_344,
        4,
        16,
    )
    assert m.rope_theta == 10_000.0
    assert cfg.run.max_steps * cfg.run.batch_size * m.context_length == 327_680_000
    o = cfg.optimizer
    assert (o.betas, o.weight_decay, o.grad_clip) == ((0.9, 0.95), 0.1, 1.0)
    assert o.min_lr < o.lr and o.warmup_iters > 0 and o.cosine_cycle_iters == cfg.run.max_steps
    assert cfg.run.autocast == "auto" and cfg.run.compile is None  # bf16 + compile on cuda only


@pytest.mark.parametrize("name", ["tinystories-17m.toml", "cpu-tiny.toml"])
def test_shipped_configs_round_trip(name):
    cfg = load_config(CONFIGS / name)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_defaults_are_valid_and_every_field_is_listed():
    cfg = TrainConfig().validate()
    assert "optimizer.lr" in config_keys() and "run.batch_size" in config_keys()
    assert len(config_keys()) == sum(len(c.__dataclass_fields__) for c in (ModelConfig, OptimizerConfig, DataConfig, RunConfig))
    assert cfg.tokens_per_step == cfg.run.batch_size * cfg.model.context_length


def test_overrides_convert_to_field_types():
    cfg = apply_overrides(
        TrainConfig(),
        [
            "optimizer.lr=3e-4",
            "run.batch_size=64",
            "run.max_steps=1_000",
            "run.checkpoint_interval=2e3",
            "optimizer.betas=0.8, 0.99",
            "model.norm=post",
            "model.tie_embeddings=yes",
            "model.d_ff=none",
            "run.compile=off",
            "optimizer.cosine_cycle_iters=null",
            "data.train_path = tokens.bin",
            "min_lr=1e-5",  # bare key, unique to one section
        ],
    )
    assert cfg.optimizer.lr == 3e-4 and isinstance(cfg.optimizer.lr, float)
    assert cfg.run.batch_size == 64 and isinstance(cfg.run.batch_size, int)
    assert cfg.run.max_steps == 1000 and cfg.run.checkpoint_interval == 2000
    assert cfg.optimizer.betas == (0.8, 0.99)
    assert cfg.model.norm == "post" and cfg.model.tie_embeddings is True and cfg.model.d_ff is None
    assert cfg.run.compile is False and cfg.optimizer.cosine_cycle_iters is None
    assert cfg.data.train_path == "tokens.bin" and cfg.optimizer.min_lr == 1e-5
    # the input config is not modified
    assert TrainConfig().optimizer.lr == OptimizerConfig().lr


def test_bracketed_tuple_and_later_override_wins():
    cfg = apply_overrides(TrainConfig(), ["optimizer.betas=[0.5,0.6]", "run.seed=1", "run.seed=7"])
    assert cfg.optimizer.betas == (0.5, 0.6) and cfg.run.seed == 7


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lrr=1", "did you mean optimizer.lr"),
        ("run.batchsize=4", "did you mean run.batch_size"),
        ("nonsense.key=1", "unknown config key"),
        ("eps=1e-3", "ambiguous"),
        ("run.batch_size=abc", "run.batch_size expects an integer"),
        ("run.batch_size=2.5", "expects an integer"),
        ("optimizer.lr=fast", "optimizer.lr expects a number"),
        ("run.compile=maybe", "expects a boolean"),
        ("optimizer.betas=0.9", "expects 2 values"),
        ("run.batch_size=0", "run.batch_size must be positive"),
        ("model.context_length=-1", "model.context_length must be positive"),
        ("model.num_heads=7", "divisible"),
        ("model.norm=layer", "model.norm must be one of pre, post, none"),
        ("data.dtype=float32", "data.dtype must be one of"),
        ("optimizer.betas=0.9,1.0", "betas"),
        ("run.grad_accum_steps=3", "divisible by run.grad_accum_steps"),
        ("optimizer.lr", "section.field=value"),
    ],
)
def test_bad_overrides_raise_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(TrainConfig(), [override])


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_load_toml_and_json(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nd_model = 64\nnum_heads = 4\n[optimizer]\nbetas = [0.9, 0.99]\n[run]\nmax_steps = 5\n")
    cfg = load_config(toml, ["run.batch_size=4"])
    assert cfg.model.d_model == 64 and cfg.optimizer.betas == (0.9, 0.99)
    assert cfg.run.max_steps == 5 and cfg.run.batch_size == 4
    assert cfg.model.vocab_size == ModelConfig().vocab_size  # untouched fields keep defaults

    js = tmp_path / "c.json"
    js.write_text(json.dumps(cfg.to_dict()))
    assert load_config(js) == cfg


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(IsADirectoryError):
        load_config(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nd_model = 3")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[model]\nd_modle = 64\n")
    with pytest.raises(ConfigError, match="did you mean model.d_model"):
        load_config(unknown)
    wrong_type = tmp_path / "wrong.toml"
    wrong_type.write_text('[run]\nbatch_size = "big"\n')
    with pytest.raises(ConfigError, match="run.batch_size expects an integer"):
        load_config(wrong_type)
    not_table = tmp_path / "flat.toml"
    not_table.write_text("model = 3\n")
    with pytest.raises(ConfigError, match="model must be a table"):
        load_config(not_table)


def test_from_dict_validates():
    with pytest.raises(ConfigError, match="model.d_model"):
        TrainConfig.from_dict({"model": {"d_model": 0}})
    with pytest.raises(ConfigError, match="must be a mapping"):
        TrainConfig.from_dict([1, 2])


@given(seed=st.integers(0, 2**62), lr=st.floats(0, 10, allow_nan=False), steps=st.integers(1, 10**9))
def test_override_values_round_trip(seed, lr, steps):
    cfg = apply_overrides(TrainConfig(), [f"run.seed={seed}", f"optimizer.lr={lr!r}", f"run.max_steps={steps}",
                                          "optimizer.cosine_cycle_iters=none"])  # fmt: skip
    assert (cfg.run.seed, cfg.optimizer.lr, cfg.run.max_steps) == (seed, lr, steps)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
