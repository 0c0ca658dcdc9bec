"""Sweeps: a learning-rate x batch-size grid and architecture ablations, one training run each.

Every run is an ordinary `lm336.train` run in its own sub-directory of the sweep directory, built
from the base config with dotted overrides (`lm336.config.apply_overrides`); all runs share the
seed, data and every other setting. Afterwards the sweep writes, atomically:
- `curves.png`: the learning curves of all runs (against steps and against wall-clock time);
- `summary.md` and `summary.csv`: the overrides of each run, final train/validation loss
  (nats/token), validation perplexity, tokens/s (training tokens over the run's wall-clock
  seconds, evaluation and checkpoints included) and whether it diverged;
- `sweep.json`: the same rows, machine-readable.

A run that diverges (training raises DivergedError on a NaN/inf loss) is recorded as diverged and
the sweep goes on; so does a run that runs out of device memory. A run whose directory already
holds the result for the same config is not trained again (rerun an interrupted sweep with the same
command; `--force` retrains everything).

Ablations change one thing at a time from the base config (plus the base run itself), or with
`--ablation-mode grid` every combination; a learning-rate / batch-size grid is crossed with them.

    lm336 sweep --config configs/cpu-tiny.toml --lr 1e-3,3e-3,1e-2 --batch-size 16,32 --out sweeps/lr
    lm336 sweep --config configs/cpu-tiny.toml --ablations norm=pre,post,none position=rope,nope \\
        ffn=swiglu,silu --out sweeps/ablations --set run.max_steps=500
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import SWEEP_ROW, prepare_out_dir
from .common import atomic_write, command
from .config import ConfigError, TrainConfig, apply_overrides, load_config

# Grid flags and the config keys they set; short names label runs and table columns.
GRID_KEYS = {"lr": "optimizer.lr", "batch_size": "run.batch_size"}
_SHORT = {"optimizer.lr": "lr", "run.batch_size": "bs"}
ROW_FILE = SWEEP_ROW  # the run's row, written when the run ends (finished or diverged)


@dataclass(frozen=True)
class SweepRun:
    """One planned run: its sub-directory name, the overrides that define it, its full config."""

    name: str
    overrides: dict[str, str]  # config key (as given) -> value (as given); {} = the base config
    config: TrainConfig


def parse_values(text: str, flag: str) -> list[str]:
    """Comma-separated values of a grid flag: `parse_values("1e-4, 3e-4", "--lr") -> ["1e-4", "3e-4"]`."""
    values = [v.strip() for v in text.split(",")]
    if not values or any(not v for v in values):
        raise ConfigError(f"{flag}: expected comma-separated values such as 1e-4,3e-4, got {text!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{flag}: repeated value in {text!r}")
    return values


def parse_ablations(items: list[str]) -> dict[str, list[str]]:
    """`["norm=pre,post", "ffn=swiglu,silu"] -> {"norm": ["pre", "post"], "ffn": ["swiglu", "silu"]}`.

    Keys are config keys, dotted ("model.norm") or bare when only one section has them ("norm").
    """
    result: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--ablations: expected KEY=V1,V2,... such as norm=pre,post,none, got {item!r}")
        if key in result:
            raise ConfigError(f"--ablations: {key} given twice")
        result[key] = parse_values(values, f"--ablations {key}")
    return result


def _label(key: str, value: str) -> str:
    short = _SHORT.get(key, key.rsplit(".", 1)[-1])
    return re.sub(r"[^A-Za-z0-9.+-]", "_", f"{short}-{value}")


def plan_sweep(
    base: TrainConfig,
    out_dir: str | Path,
    lrs: list[str] = (),
    batch_sizes: list[str] = (),
    ablations: dict[str, list[str]] | None = None,
    ablation_mode: str = "one-at-a-time",
    tokens: int | None = None,
) -> list[SweepRun]:
    """Every run of the sweep with its validated config (so a bad value fails before any training).

    Args:
        base: the config every run starts from.
        out_dir: the sweep directory; run i trains in out_dir/<name>.
        lrs, batch_sizes: grid values (strings as typed); empty = the base value only.
        ablations: config key -> values. "one-at-a-time": the base config plus one run per value
            that differs from the base; "grid": every combination.
        tokens: training tokens per run; sets run.max_steps (and the cosine length) from each
            run's batch size, so runs with different batch sizes see the same data. None = keep
            the base's max_steps.
    Returns:
        The runs, in order; names are unique. Variants equal to the base config are dropped.
    """
    ablations = ablations or {}
    if ablation_mode not in ("one-at-a-time", "grid"):
        raise ConfigError(f"ablation mode must be one-at-a-time or grid, got {ablation_mode!r}")
    if not (lrs or batch_sizes or ablations):
        raise ConfigError("nothing to sweep: give --lr, --batch-size and/or --ablations")
    out_dir = Path(out_dir)

    # 1. Architecture variants: lists of (key, value) overrides.
    if ablation_mode == "grid":
        variants = [list(zip(ablations, combo)) for combo in itertools.product(*ablations.values())]
    else:
        variants = [[]] + [[(key, value)] for key, values in ablations.items() for value in values]
    # 2. Crossed with the grid.
    grid = list(itertools.product(lrs or [None], batch_sizes or [None]))
    runs, seen_configs, seen_names = [], set(), set()
    for variant in variants:
        for lr, bs in grid:
            overrides = list(variant)
            if lr is not None:
                overrides.append((GRID_KEYS["lr"], lr))
            if bs is not None:
                overrides.append((GRID_KEYS["batch_size"], bs))
            cfg = apply_overrides(base, [f"{k}={v}" for k, v in overrides])
            if tokens is not None:
                per_step = cfg.run.batch_size * cfg.model.context_length
                steps = max(1, tokens // per_step)
                extra = [
                    f"run.max_steps={steps}",
                    f"optimizer.cosine_cycle_iters={steps}",
                    f"optimizer.warmup_iters={min(cfg.optimizer.warmup_iters, steps)}",
                ]
                cfg = apply_overrides(cfg, extra)
            key = json.dumps(cfg.to_dict(), sort_keys=True)
            if key in seen_configs:  # e.g. "norm=pre" when the base is pre-norm: that is the base run
                continue
            seen_configs.add(key)
            name = "_".join(_label(k, v) for k, v in overrides) or "base"
            if name in seen_names:
                raise ConfigError(f"two runs would share the directory name {name!r}; spell the values differently")
            seen_names.add(name)
            cfg = apply_overrides(cfg, [f"run.out_dir={out_dir / name}"])
            runs.append(SweepRun(name, dict(overrides), cfg))
    return runs


def _last(records: list[dict], key: str):
    for r in reversed(records):
        v = r.get(key)
        if isinstance(v, (int, float)):
            return v
    return None


def _row(run: SweepRun, summary: dict | None, error: str | None, status: str) -> dict:
    """The summary-table row of a run, from train()'s summary or, when it stopped early, its log."""
    from .plot import read_log

    records = []
    try:
        records = read_log(run.config.run.out_dir)
    except (OSError, ValueError):
        pass
    if summary is not None:
        steps, tokens, time_s = summary["steps"], summary["tokens"], summary["time_s"]
        train_loss, val_loss = summary["final_train_loss"], summary["final_val_loss"]
        ppl = summary["final_val_perplexity"]
    else:  # diverged or failed: the last logged values
        steps, tokens, time_s = _last(records, "step"), _last(records, "tokens"), _last(records, "time_s")
        train_loss, val_loss = _last(records, "train_loss"), _last(records, "val_loss")
        ppl = _last(records, "val_perplexity")
    return {
        "run": run.name,
        **{_SHORT.get(k, k): v for k, v in run.overrides.items()},
        "final_train_loss": train_loss,
        "final_val_loss": val_loss,
        "final_val_perplexity": ppl,
        "tokens_per_s": tokens / time_s if tokens and time_s else None,
        "steps": steps,
        "tokens": tokens,
        "time_s": time_s,
        "diverged": status == "diverged",
        "status": status,
        "error": error or "",
        "config": run.config.to_dict(),
    }


def run_sweep(runs: list[SweepRun], force: bool = False, log=print) -> list[dict]:
    """Train each run in turn and return one row per run (see `write_results`).

    DivergedError and out-of-memory errors are recorded and the sweep continues; anything else
    (bad data, a bug) stops it. A run whose directory holds a row for the same config is reused
    unless `force`.
    """
    import torch

    from .training import DivergedError, train

    rows = []
    for i, run in enumerate(runs, 1):
        run_dir = Path(run.config.run.out_dir)
        saved = run_dir / ROW_FILE
        if saved.exists() and not force:
            try:
                row = json.loads(saved.read_text(encoding="utf-8"))
            except ValueError:
                row = None
            if row is not None and row.get("config") == json.loads(json.dumps(run.config.to_dict())):
                log(f"[{i}/{len(runs)}] {run.name}: already done ({row['status']}), reusing {saved}")
                rows.append(row)
                continue
        log(f"[{i}/{len(runs)}] {run.name}: {' '.join(f'{k}={v}' for k, v in run.overrides.items()) or 'base config'}")
        summary, error, status = None, None, "finished"
        try:
            # The sweep decides itself what to reuse (above): a run it trains again replaces what is there.
            summary = train(apply_overrides(run.config, ["run.resume=false", "run.overwrite=true"]))
        except DivergedError as exc:
            error, status = str(exc), "diverged"
        except torch.OutOfMemoryError as exc:
            error, status = f"out of memory: {exc}".splitlines()[0], "out of memory"
        if error:
            log(f"[{i}/{len(runs)}] {run.name}: {status}; the sweep goes on ({error.splitlines()[0][:200]})")
        row = _row(run, summary, error, status)
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_text(saved, json.dumps(row, indent=2) + "\n")
        rows.append(row)
    return rows


def _columns(rows: list[dict]) -> list[str]:
    override_cols = []
    for row in rows:
        for key in row:
            if key not in _FIXED and key not in override_cols and key not in ("config", "error", "status"):
                override_cols.append(key)
    return ["run", *override_cols, *(c for c in _FIXED if c != "run")]


_FIXED = ("run", "final_train_loss", "final_val_loss", "final_val_perplexity", "tokens_per_s", "steps", "tokens", "time_s", "diverged")


def _config_value(config: dict, column: str):
    """The value of an override column in a run's config dict, for runs that kept the base value:
    `_config_value(cfg, "norm") -> "pre"`, `_config_value(cfg, "bs") -> 32`."""
    key = {short: key for key, short in _SHORT.items()}.get(column, column)
    if "." in key:
        section, name = key.split(".", 1)
        return config.get(section, {}).get(name)
    owners = [sec[key] for sec in config.values() if isinstance(sec, dict) and key in sec]
    return owners[0] if len(owners) == 1 else None


def _cell(row: dict, column: str):
    if column in row:
        return row[column]
    return _config_value(row.get("config", {}), column)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def format_markdown(rows: list[dict]) -> str:
    """The summary as a Markdown table, best validation loss first marked with a star."""
    cols = _columns(rows)
    finite = [
        r for r in rows if not r["diverged"] and isinstance(r.get("final_val_loss"), (int, float)) and math.isfinite(r["final_val_loss"])
    ]
    best = min(finite, key=lambda r: r["final_val_loss"])["run"] if finite else None
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        cells = [_fmt(_cell(r, c)) for c in cols]
        if r["run"] == best:
            cells[0] = f"**{cells[0]}** *"
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if best:
        notes.append(f"* lowest final validation loss: {best}.")
    for r in rows:
        if r["status"] != "finished":
            notes.append(f"- {r['run']}: {r['status']}: {r['error'].splitlines()[0] if r['error'] else ''}")
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "") + "\n"


def format_csv(rows: list[dict]) -> str:
    """The summary as CSV (full precision; empty cells for missing values)."""
    cols = _columns(rows) + ["status"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in rows:
        writer.writerow(["" if _cell(r, c) is None else _cell(r, c) for c in cols])
    return buf.getvalue()


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_results(rows: list[dict], out_dir: str | Path, metric: str = "val_loss") -> dict[str, Path]:
    """Write summary.md, summary.csv, sweep.json and curves.png into `out_dir`; return their paths.

    The figure plots `metric`, falling back to train_loss when no run validated; runs that logged
    nothing (diverged before their first log step) are left out of it. Without matplotlib the
    tables are still written and the figure is skipped with a message.
    """
    from .plot import draw_curves, read_log

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "summary.md", "csv": out_dir / "summary.csv", "json": out_dir / "sweep.json"}
    _write_text(paths["markdown"], format_markdown(rows))
    _write_text(paths["csv"], format_csv(rows))
    _write_text(paths["json"], json.dumps(rows, indent=2) + "\n")
    curves = []
    for r in rows:
        try:
            curves.append((r["run"], read_log(Path(r["config"]["run"]["out_dir"]))))
        except (OSError, ValueError):
            continue
    if curves:
        has_metric = any(isinstance(rec.get(metric), (int, float)) for _, recs in curves for rec in recs)
        try:
            paths["figure"] = draw_curves(
                curves, out_dir / "curves.png", metric if has_metric else "train_loss", title=f"sweep {out_dir.name}"
            )
        except RuntimeError as exc:  # matplotlib missing: the tables are the main product
            print(f"lm336 sweep: figure skipped: {exc}", file=sys.stderr)
    return paths


def sweep(
    base: TrainConfig,
    out_dir: str | Path,
    lrs: list[str] = (),
    batch_sizes: list[str] = (),
    ablations: dict[str, list[str]] | None = None,
    ablation_mode: str = "one-at-a-time",
    tokens: int | None = None,
    force: bool = False,
    metric: str = "val_loss",
    log=print,
) -> list[dict]:
    """Plan, run and summarise a sweep (see `plan_sweep`, `run_sweep`, `write_results`); returns the rows."""
    runs = plan_sweep(base, out_dir, lrs, batch_sizes, ablations, ablation_mode, tokens)
    rows = run_sweep(runs, force=force, log=log)
    write_results(rows, out_dir, metric)
    return rows


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lm336 sweep",
        description="Train one run per learning rate x batch size and/or architecture ablation, then write one figure and a summary table.",
        epilog="Example: lm336 sweep --config configs/cpu-tiny.toml --lr 1e-3,3e-3 --ablations norm=pre,post,none --out sweeps/a",
    )
    p.add_argument("--config", help="base TOML or JSON config (default: built-in defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override a base config field for every run, e.g. --set run.max_steps=500",
    )
    p.add_argument("--lr", help="peak learning rates, comma-separated (e.g. 1e-4,3e-4,1e-3)")
    p.add_argument("--batch-size", help="batch sizes in sequences per step, comma-separated (e.g. 16,32)")
    p.add_argument(
        "--ablations",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=V1,V2",
        help="architecture (or any config) variants, e.g. norm=pre,post,none position=rope,nope ffn=swiglu,silu",
    )
    p.add_argument(
        "--ablation-mode",
        choices=("one-at-a-time", "grid"),
        default="one-at-a-time",
        help="one-at-a-time: the base run plus one run per changed value (default); grid: every combination",
    )
    p.add_argument(
        "--tokens",
        type=float,
        help="training tokens per run (e.g. 2e6); sets max_steps from each run's batch size so every run "
        "sees the same data (default: the config's max_steps)",
    )
    p.add_argument("--out", required=True, help="sweep directory: one sub-directory per run, plus curves.png, summary.md/csv")
    p.add_argument(
        "--metric",
        default="val_loss",
        choices=("val_loss", "train_loss", "val_perplexity"),
        help="what the figure plots (default val_loss)",
    )
    p.add_argument("--force", action="store_true", help="retrain runs that already finished in the sweep directory")
    p.add_argument("--dry-run", action="store_true", help="print the planned runs and exit")
    return p


@command("lm336 sweep")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    base = load_config(args.config, args.overrides)
    lrs = parse_values(args.lr, "--lr") if args.lr else []
    bss = parse_values(args.batch_size, "--batch-size") if args.batch_size else []
    tokens = None
    if args.tokens is not None:
        if not math.isfinite(args.tokens) or args.tokens < 1:
            raise ConfigError(f"--tokens must be a positive number of tokens, got {args.tokens}")
        tokens = int(args.tokens)
    runs = plan_sweep(base, args.out, lrs, bss, parse_ablations(args.ablations), args.ablation_mode, tokens)
    if args.dry_run:
        for run in runs:
            c = run.config
            print(f"{run.name}: {c.run.max_steps} steps x {c.run.batch_size} x {c.model.context_length} tokens -> {c.run.out_dir}")
        return 0
    prepare_out_dir(args.out, create=False)  # a file where the sweep directory belongs fails before the first run
    rows = run_sweep(runs, force=args.force)
    paths = write_results(rows, args.out, args.metric)
    print(paths["markdown"].read_text(encoding="utf-8"))
    written = ", ".join(str(p) for p in paths.values())
    diverged = sum(r["status"] != "finished" for r in rows)
    print(f"{len(rows)} runs ({diverged} did not finish); wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
