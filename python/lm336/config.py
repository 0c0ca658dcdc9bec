"""Configuration dataclasses: `ModelConfig` (architecture) and `TrainConfig` (the run).

`TrainConfig` nests four sections, each a dataclass whose every field says its unit and, where a
feature can be switched off, the value that disables it:

    model      ModelConfig      architecture (SPEC section 4)
    optimizer  OptimizerConfig  AdamW, the cosine schedule, gradient clipping
    data       DataConfig       token arrays on disk
    run        RunConfig        steps, batch, evaluation, checkpoints, device and speed switches

Configs come from TOML (one table per section) or JSON files, and dotted overrides whose strings are
converted to each field's declared type:

    cfg = load_config("configs/tinystories-17m.toml", ["optimizer.lr=3e-3", "run.batch_size=64"])
    cfg = apply_overrides(cfg, ["model.norm=post"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg

Unknown keys and bad values raise `ConfigError` (a `ValueError`) naming the key, the expected type
and the closest known keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .common import check_device_name

NORMS = ("pre", "post", "none")
POSITIONS = ("rope", "nope")
FFNS = ("swiglu", "silu")
ATTENTIONS = ("auto", "reference", "flash")
TOKEN_DTYPES = ("uint16", "uint32", "int32", "int64")
PARAM_DTYPES = ("float32", "float64", "bfloat16")
AUTOCAST_DTYPES = ("auto", "none", "bfloat16", "float16")


class ConfigError(ValueError):
    """A configuration file, dict or override that cannot be turned into a valid config."""


def default_d_ff(d_model: int, ffn: str = "swiglu") -> int:
    """Feed-forward width when none is given: about 8/3 d_model rounded to a multiple of 64 for
    SwiGLU (the same parameter count as a 4 d_model two-matrix MLP), 4 d_model for plain SiLU.

    Example: default_d_ff(512) -> 1344, default_d_ff(512, "silu") -> 2048.
    """
    if ffn == "swiglu":
        return max(64, 64 * round(8 * d_model / 3 / 64))
    if ffn == "silu":
        return 4 * d_model
    raise ValueError(f"ffn must be one of {FFNS}, got {ffn!r}")


@dataclass
class ModelConfig:
    vocab_size: int = 10_000  # tokens in the vocabulary, specials included
    context_length: int = 256  # longest sequence the model accepts (tokens); also the training length
    d_model: int = 512  # residual stream width
    num_layers: int = 4  # Transformer blocks
    num_heads: int = 16  # attention heads; d_model must be divisible by it
    d_ff: int | None = 1344  # feed-forward width; None = 8/3 d_model rounded to 64 (swiglu) or 4 d_model (silu)
    rope_theta: float = 10_000.0  # RoPE base
    norm: str = "pre"  # "pre" | "post" | "none"
    position: str = "rope"  # "rope" | "nope"
    ffn: str = "swiglu"  # "swiglu" | "silu"
    tie_embeddings: bool = False  # share token_embeddings.weight with lm_head.weight
    eps: float = 1e-5  # RMSNorm epsilon
    # attention kernel: "auto" (the fastest exact one for the device) | "reference" (materialises
    # the scores; the oracle) | "flash" (block-wise, never materialises them; an error where it cannot run)
    attention: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Build and validate a ModelConfig from a dict such as `to_dict()` gives (missing keys keep
        their defaults; unknown keys and bad values raise ConfigError)."""
        cfg = _build(cls, d, prefix="model.")
        cfg.validate()
        return cfg

    def validate(self, prefix: str = "model.") -> ModelConfig:
        """Raise ConfigError on an architecture that cannot be built; return self.

        The one check of a model's shape and variants: configs, `TransformerLM(...)`, the accounting
        and checkpoints all call it. `prefix` is how messages name the fields ("model." for config
        keys, "" for constructor arguments).
        """
        _check_types(self, prefix)
        for name in ("vocab_size", "context_length", "d_model", "num_layers", "num_heads"):
            _require(getattr(self, name) > 0, f"{prefix}{name} must be positive, got {getattr(self, name)!r}")
        _require(self.d_ff is None or self.d_ff > 0, f"{prefix}d_ff must be a positive integer or none, got {self.d_ff!r}")
        _require(
            self.d_model % self.num_heads == 0,
            f"{prefix}d_model ({self.d_model}) must be divisible by {prefix}num_heads ({self.num_heads})",
        )
        _choice(f"{prefix}norm", self.norm, NORMS)
        _choice(f"{prefix}position", self.position, POSITIONS)
        _choice(f"{prefix}ffn", self.ffn, FFNS)
        if self.position == "rope":
            d_k = self.d_model // self.num_heads
            _require(
                d_k % 2 == 0,
                f"RoPE needs an even head dimension, but {prefix}d_model/{prefix}num_heads = {self.d_model}/{self.num_heads} = {d_k}",
            )
        _require(self.rope_theta > 0, f"{prefix}rope_theta must be positive, got {self.rope_theta}")
        _require(self.eps > 0, f"{prefix}eps must be positive, got {self.eps}")
        _choice(f"{prefix}attention", self.attention, ATTENTIONS)
        return self


@dataclass
class OptimizerConfig:
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    min_lr: float = 1e-4  # floor the cosine decays to, held after cosine_cycle_iters
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW (beta1, beta2)
    eps: float = 1e-8  # AdamW denominator epsilon
    weight_decay: float = 0.1  # decoupled weight decay per unit lr; 0 = disable
    warmup_iters: int = 100  # optimizer steps of linear warm-up from 0 to lr; 0 = disable
    cosine_cycle_iters: int | None = None  # step at which the cosine reaches min_lr; None = run.max_steps
    grad_clip: float = 1.0  # max global L2 norm of the gradients; 0 = disable clipping

    def validate(self) -> None:
        _check_types(self, "optimizer.")
        _require(self.lr >= 0 and math.isfinite(self.lr), f"optimizer.lr must be finite and >= 0, got {self.lr}")
        ok = 0 <= self.min_lr and math.isfinite(self.min_lr)
        _require(ok, f"optimizer.min_lr must be finite and >= 0, got {self.min_lr}")
        _require(
            len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas),
            f"optimizer.betas must be two numbers in [0, 1), got {self.betas}",
        )
        _require(self.eps > 0, f"optimizer.eps must be positive, got {self.eps}")
        _require(self.weight_decay >= 0, f"optimizer.weight_decay must be >= 0, got {self.weight_decay}")
        _require(self.warmup_iters >= 0, f"optimizer.warmup_iters must be >= 0, got {self.warmup_iters}")
        _require(self.grad_clip >= 0, f"optimizer.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        if self.cosine_cycle_iters is not None:
            _require(
                self.cosine_cycle_iters >= self.warmup_iters,
                f"optimizer.cosine_cycle_iters ({self.cosine_cycle_iters}) must be >= optimizer.warmup_iters ({self.warmup_iters})",
            )


@dataclass
class DataConfig:
    train_path: str = ""  # training tokens: a raw little-endian .bin of `dtype`, a .npy, or a token-shard directory (manifest.json)
    val_path: str = ""  # validation tokens (same formats); "" = hold out the last val_fraction of train_path
    dtype: str = "uint16"  # element type of raw .bin files: uint16 | uint32 | int32 | int64 (.npy carry their own)
    val_fraction: float = 0.05  # share of train_path held out when val_path is ""; unused otherwise
    tokenizer_path: str = ""  # tokenizer of the arrays (file or folder): validation also logs bits per byte; "" = none

    def validate(self) -> None:
        _check_types(self, "data.")
        _choice("data.dtype", self.dtype, TOKEN_DTYPES)
        _require(0.0 < self.val_fraction < 1.0, f"data.val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass
class RunConfig:
    out_dir: str = "runs/default"  # run directory: config.json, log.jsonl, ckpt.pt, summary.json
    max_steps: int = 1000  # optimizer steps to train for (tokens = max_steps * batch_size * context_length)
    batch_size: int = 32  # sequences per optimizer step, summed over processes and accumulation micro-steps
    grad_accum_steps: int = 1  # micro-batches per optimizer step and process; 1 = no accumulation
    eval_interval: int = 100  # steps between validation passes; 0 = only after the last step
    eval_batches: int = 10  # validation batches of batch_size sequences, always the same windows; 0 = no validation
    log_interval: int = 10  # steps between log lines (each one syncs the device once)
    checkpoint_interval: int = 500  # steps between checkpoints; 0 = only after the last step
    seed: int = 0  # seeds model init and the batch stream (each process draws its own stream); 0 <= seed < 2**63
    device: str = "auto"  # "auto" (cuda if present, else mps, else cpu) | "cpu" | "cuda" | "cuda:N" | "mps"; must exist
    dtype: str = "float32"  # parameter dtype: float32 | float64 | bfloat16 (AdamW state follows it)
    autocast: str = "auto"  # autocast dtype: "auto" (bfloat16 on cuda, none on cpu) | "none" | "bfloat16" | "float16"
    compile: bool | None = None  # torch.compile the model; None = on for cuda, off for cpu
    tf32: bool = True  # allow TF32 matmuls on Ampere+ GPUs (float32 runs only); false = exact float32
    resume: bool = False  # continue from out_dir/ckpt.pt (model, optimizer, step, RNG states)
    overwrite: bool = False  # start afresh in an out_dir that holds a run; false = refuse (choose resume or overwrite)
    time_budget_s: float = 0.0  # wall-clock seconds for the whole run: max_steps is re-planned from the measured step time; 0 = off
    peak_flops: float = (
        0.0  # device peak FLOP/s for MFU; 0 = the datasheet bf16 dense peak of a known GPU, or a matmul rate measured on the CPU
    )
    progress: bool = True  # progress bar on a terminal (plain log lines when output is piped); false = plain log lines
    wandb: bool = False  # log to Weights & Biases (needs the wandb package)
    wandb_project: str = "lm336"  # W&B project name
    wandb_run_name: str = ""  # W&B run name; "" = the out_dir's name

    def validate(self) -> None:
        _check_types(self, "run.")
        for name in ("max_steps", "batch_size", "grad_accum_steps", "log_interval"):
            _require(getattr(self, name) > 0, f"run.{name} must be positive, got {getattr(self, name)}")
        for name in ("eval_interval", "eval_batches", "checkpoint_interval"):
            _require(getattr(self, name) >= 0, f"run.{name} must be >= 0 (0 = off), got {getattr(self, name)}")
        _require(
            self.batch_size % self.grad_accum_steps == 0,
            f"run.batch_size ({self.batch_size}) must be divisible by run.grad_accum_steps ({self.grad_accum_steps})",
        )
        _require(bool(self.out_dir), "run.out_dir must not be empty")
        _choice("run.dtype", self.dtype, PARAM_DTYPES)
        _choice("run.autocast", self.autocast, AUTOCAST_DTYPES)
        _require(0 <= self.seed < 2**63, f"run.seed must be an integer in [0, 2**63), got {self.seed}")
        _require(self.time_budget_s >= 0, f"run.time_budget_s must be >= 0 (0 = off), got {self.time_budget_s}")
        _require(self.peak_flops >= 0, f"run.peak_flops must be >= 0 (0 = from the device), got {self.peak_flops}")
        _require(not (self.resume and self.overwrite), "run.resume and run.overwrite exclude each other: continue the run, or replace it")
        try:
            check_device_name(self.device)
        except ValueError as e:
            raise ConfigError(f"run.device: {e}") from None


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)  # architecture
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)  # AdamW + schedule + clipping
    data: DataConfig = field(default_factory=DataConfig)  # token arrays
    run: RunConfig = field(default_factory=RunConfig)  # loop, logging, checkpoints, device

    def to_dict(self) -> dict:
        """Plain nested dict (tuples become lists), JSON- and TOML-ready."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build and validate a config from a nested dict (missing keys keep their defaults)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a mapping of sections, got {type(d).__name__}")
        cfg = _build(cls, d, prefix="")
        cfg.validate()
        return cfg

    def validate(self) -> TrainConfig:
        """Check every section; returns self so calls chain. Raises ConfigError."""
        for name, cls in _sections().items():
            _require(isinstance(getattr(self, name), cls), f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}")
        self.model.validate()
        self.optimizer.validate()
        self.data.validate()
        self.run.validate()
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.run.batch_size * self.model.context_length


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a TOML (.toml) or JSON (anything else) config and apply dotted overrides.

    Args:
        path: config file; None starts from the defaults.
        overrides: strings "section.field=value", e.g. "optimizer.lr=1e-3".

    Returns:
        A validated TrainConfig.
    """
    if path is None:
        data: dict = {}
    else:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        if path.is_dir():
            raise IsADirectoryError(f"config file {path} is a directory")
        if not path.is_file():
            raise ConfigError(f"config file {path} is not a regular file")
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix.lower() == ".toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:  # TOMLDecodeError and JSONDecodeError are ValueErrors
            raise ConfigError(f"{path}: cannot parse config: {e}") from e
    try:
        cfg = _build(TrainConfig, data, prefix="")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Return a copy of `cfg` with "section.field=value" overrides applied, then validated.

    Values are converted to the field's type: ints accept "1_000" and "3.2e8" (when integral),
    bools accept true/false/1/0/yes/no/on/off, optional fields accept "none"/"null", tuples accept
    "0.9,0.95" or "[0.9, 0.95]". A bare field name ("lr=1e-3") works when exactly one section has it.

        apply_overrides(cfg, ["optimizer.lr=1e-3", "model.norm=post"]).optimizer.lr -> 0.001
    """
    d = asdict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.field=value")
        key, raw = (s.strip() for s in item.split("=", 1))
        section, name = _resolve_key(key)
        ftype = _field_types(type(getattr(cfg, section)))[name]
        d[section][name] = _convert(raw, ftype, f"{section}.{name}", from_string=True)
    return TrainConfig.from_dict(d)


def config_keys() -> list[str]:
    """Every dotted key a TrainConfig accepts, e.g. ["model.vocab_size", ...]."""
    return [f"{s}.{n}" for s, cls in _sections().items() for n in _field_types(cls)]


# --- internals -------------------------------------------------------------------------------


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _check_types(section: Any, prefix: str) -> None:
    """Raise ConfigError unless every field of the dataclass `section` holds its declared type (a
    dataclass built in Python skips the converters): ints are ints (not bools), floats are finite
    numbers, optional fields may be None, tuples have their length."""
    for name, t in _field_types(type(section)).items():
        _check_value(getattr(section, name), t, prefix + name)


def _check_value(value: Any, t: Any, key: str) -> None:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        _check_value(value, next(a for a in args if a is not type(None)), key)
    elif origin is tuple:
        _require(isinstance(value, (tuple, list)) and len(value) == len(args), f"{key} expects {len(args)} values, got {value!r}")
        for v, a in zip(value, args):
            _check_value(v, a, key)
    elif t is bool:
        _require(isinstance(value, bool), f"{key} expects a boolean (true/false), got {value!r}")
    elif t is int:
        _require(isinstance(value, int) and not isinstance(value, bool), f"{key} expects an integer, got {value!r}")
    elif t is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _require(ok and math.isfinite(value), f"{key} expects a finite number, got {value!r}")
    elif t is str:
        _require(isinstance(value, str), f"{key} expects a string, got {value!r}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"{key} must be one of {', '.join(choices)}; got {value!r}")


def _sections() -> dict[str, type]:
    return {name: t for name, t in _field_types(TrainConfig).items()}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _resolve_key(key: str) -> tuple[str, str]:
    keys = config_keys()
    if key in keys:
        section, name = key.split(".", 1)
        return section, name
    if "." not in key:  # bare field name: accept it when unambiguous
        owners = [k for k in keys if k.split(".", 1)[1] == key]
        if len(owners) == 1:
            section, name = owners[0].split(".", 1)
            return section, name
        if len(owners) > 1:
            raise ConfigError(f"config key {key!r} is ambiguous: use one of {', '.join(owners)}")
    raise _unknown(key, keys)


def _build(cls: type, data: Any, prefix: str) -> Any:
    """Instantiate dataclass `cls` from a (possibly partial) mapping, converting each value."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table/mapping, got {type(data).__name__}")
    types_ = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in types_:
            raise _unknown(prefix + key, [prefix + k for k in types_])
        t = types_[key]
        if dataclasses.is_dataclass(t):
            kwargs[key] = _build(t, value, prefix=f"{prefix}{key}.")
        else:
            kwargs[key] = _convert(value, t, prefix + key, from_string=False)
    return cls(**kwargs)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null", "~", ""}


def _convert(value: Any, t: Any, key: str, *, from_string: bool) -> Any:
    """Convert `value` (a string from the command line, or a TOML/JSON value) to type `t`."""
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        inner = [a for a in args if a is not type(None)]
        if value is None or (isinstance(value, str) and from_string and value.strip().lower() in _NONE):
            return None
        return _convert(value, inner[0], key, from_string=from_string)
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            parts: list[Any] = [p.strip() for p in text.split(",") if p.strip()]
        elif isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            raise ConfigError(f"{key} expects {len(args)} comma-separated values, got {value!r}")
        if len(parts) != len(args):
            raise ConfigError(f"{key} expects {len(args)} values, got {len(parts)}: {value!r}")
        return tuple(_convert(p, a, key, from_string=isinstance(p, str)) for p, a in zip(parts, args))
    if t is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key} expects a boolean (true/false), got {value!r}")
    if t is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            # Exact first, so large integers (seeds) never pass through a float; "1e6" still works.
            try:
                return int(value.replace("_", "").strip())
            except ValueError:
                pass
        try:
            number = float(value.replace("_", "")) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} expects an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{key} expects an integer, got {value!r}")
        return int(number)
    if t is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} expects a number, got {value!r}")
        try:
            number = float(value.replace("_", "")) if isinstance(value, str) else float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key} expects a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key} expects a finite number, got {value!r}")
        return number
    if t is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} expects a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported field type {t}")  # internal: a new field type needs a converter
