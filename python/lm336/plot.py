"""Learning curves of one or more training runs: a metric against steps and against wall-clock time.

Each run directory holds the `log.jsonl` the training loop writes (one JSON object per log step:
step, tokens, time_s, lr, train_loss, val_loss, val_perplexity, grad_norm; val_* are null on steps
without validation). One PNG with two panels (metric vs step, metric vs wall-clock time), one line
per run, labelled with the run directory's name. matplotlib is imported only when drawing (Agg
backend, no display needed); the PNG is written atomically.

    lm336 plot runs/lr1e-3 runs/lr3e-3 --out curves.png --metric val_loss
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .checkpoint import LOG
from .common import atomic_write, command

METRICS = ("val_loss", "train_loss", "val_perplexity", "lr", "grad_norm", "tokens")
_LABELS = {
    "val_loss": "validation loss (nats/token)",
    "train_loss": "training loss (nats/token)",
    "val_perplexity": "validation perplexity",
    "lr": "learning rate",
    "grad_norm": "gradient L2 norm (before clipping)",
    "tokens": "tokens seen",
}


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """The records of `run_dir/log.jsonl` (or of the given .jsonl file), in file order.

    A last line that does not parse is skipped (a run still writing it); any other malformed line
    raises ValueError naming the file and line.

        read_log("runs/x") -> [{"step": 10, "time_s": 1.2, "train_loss": 7.1, "val_loss": None, ...}, ...]
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / LOG
    if not path.exists():
        hint = "" if path.parent.exists() else f" (the directory {path.parent} does not exist either)"
        raise FileNotFoundError(f"{path}: no training log here{hint}; pass run directories written by `lm336 train`")
    lines = path.read_text(encoding="utf-8").splitlines()
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    records = []
    for k, (lineno, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            if k == len(numbered) - 1:
                break  # a partially written last line of a run in progress
            raise ValueError(f"{path}:{lineno}: malformed log line ({exc})") from None
        records.append(record)
    if not records:
        raise ValueError(f"{path}: the log is empty (has the run logged a step yet?)")
    return records


def expand_run_dirs(paths: list[str | os.PathLike]) -> list[Path]:
    """Run directories from the command line: a directory without a log.jsonl of its own but with
    run sub-directories (a sweep) stands for those runs, in name order; a .jsonl file is a run.

        expand_run_dirs(["sweeps/lr"]) -> [Path("sweeps/lr/lr-1e-3"), Path("sweeps/lr/lr-3e-3")]
    """
    result = []
    for path in map(Path, paths):
        if path.is_dir() and not (path / LOG).exists():
            runs = sorted(p for p in path.iterdir() if (p / LOG).is_file())
            if runs:
                result.extend(runs)
                continue
        elif path.is_file() and path.suffix != ".jsonl":
            raise ValueError(f"{path}: not a run directory or a .jsonl log")
        result.append(path)
    return result


def series(records: list[dict], x: str, y: str) -> tuple[list[float], list[float]]:
    """The (x, y) points of the records that have a finite number for both keys.

    series([{"step": 1, "val_loss": None}, {"step": 2, "val_loss": 3.0}], "step", "val_loss")
    -> ([2.0], [3.0])
    """
    xs, ys = [], []
    for r in records:
        a, b = r.get(x), r.get(y)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b):
            xs.append(float(a))
            ys.append(float(b))
    return xs, ys


def run_labels(run_dirs: list[str | os.PathLike]) -> list[str]:
    """Legend labels: each directory's name, with parent names added until they are distinct.

    run_labels(["a/run", "b/run", "c"]) -> ["a/run", "b/run", "c"]
    """
    parts = [Path(os.path.abspath(d)).parts for d in run_dirs]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-k:]) for p, k in zip(parts, depth)]
        clashing = [i for i, label in enumerate(labels) if labels.count(label) > 1 and depth[i] < len(parts[i])]
        if not clashing:
            return labels
        for i in clashing:
            depth[i] += 1


def _time_axis(seconds_max: float) -> tuple[float, str]:
    if seconds_max >= 3 * 3600:
        return 3600.0, "hours"
    if seconds_max >= 3 * 60:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _import_pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise RuntimeError("plotting needs matplotlib: pip install matplotlib (or pip install 'bpe336[plot]')") from exc
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def draw_curves(
    runs: list[tuple[str, list[dict]]], out: str | os.PathLike, metric: str = "val_loss", title: str | None = None, log_y: bool = False
) -> Path:
    """Draw `metric` against step (left) and against wall-clock time (right) for every run, as
    one PNG at `out` (written atomically). Returns the path.

    Args:
        runs: (label, log records) per run, e.g. from `read_log`.
        out: the PNG to write; its directory must exist.
        metric: a numeric key of the log records ("val_loss", "train_loss", ...).
        title: figure title (default: none; each panel names the metric).
        log_y: logarithmic y axis (useful for perplexity and learning rates).
    Raises:
        ValueError: when no run has any finite value of `metric`.
        RuntimeError: when matplotlib is not installed.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: the figure is a PNG; give a path ending in .png")
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "output directory does not exist"
        raise (NotADirectoryError if out.parent.exists() else FileNotFoundError)(f"{out.parent}: {what}")
    points = [(label, series(records, "step", metric), series(records, "time_s", metric)) for label, records in runs]
    if not any(by_step[0] for _, by_step, _ in points):
        names = ", ".join(label for label, _ in runs)
        raise ValueError(f"no run has a value of {metric!r} to plot ({names}); try --metric train_loss, or check that validation ran")
    t_max = max((max(by_time[0]) for _, _, by_time in points if by_time[0]), default=0.0)
    scale, unit = _time_axis(t_max)

    plt = _import_pyplot()
    fig, (ax_step, ax_time) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    try:
        for label, (steps, ys), (times, ts_y) in points:
            marker = "o" if len(steps) < 30 else None  # sparse validation points stay visible
            (line,) = ax_step.plot(steps, ys, label=label, marker=marker, markersize=3, linewidth=1.5)
            ax_time.plot([t / scale for t in times], ts_y, label=label, marker=marker, markersize=3, linewidth=1.5, color=line.get_color())
        ylabel = _LABELS.get(metric, metric)
        ax_step.set_xlabel("step (optimizer updates)")
        ax_time.set_xlabel(f"wall-clock time ({unit})")
        for ax in (ax_step, ax_time):
            ax.set_ylabel(ylabel)
            ax.grid(True, alpha=0.3)
            if log_y:
                ax.set_yscale("log")
        ax_step.set_title(f"{ylabel} vs step")
        ax_time.set_title(f"{ylabel} vs wall-clock time")
        ax_time.legend(fontsize="small", loc="best")
        if title:
            fig.suptitle(title)
        with atomic_write(out, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
    finally:
        plt.close(fig)
    return out


def plot_runs(
    run_dirs: list[str | os.PathLike], out: str | os.PathLike, metric: str = "val_loss", title: str | None = None, log_y: bool = False
) -> Path:
    """Read each run's log.jsonl and draw them on one figure (see `draw_curves`)."""
    run_dirs = expand_run_dirs(run_dirs)
    if not run_dirs:
        raise ValueError("give at least one run directory")
    runs = list(zip(run_labels(run_dirs), (read_log(d) for d in run_dirs)))
    return draw_curves(runs, out, metric, title, log_y)


@command("lm336 plot")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lm336 plot", description="Draw learning curves (against steps and against wall-clock time) of one or more runs as a PNG."
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories holding log.jsonl, .jsonl files, or a sweep directory (all its runs)",
    )
    p.add_argument("--out", default="curves.png", help="PNG to write (default curves.png)")
    p.add_argument(
        "--metric",
        default="val_loss",
        choices=METRICS,
        help="what to plot: losses in nats/token, perplexity, learning rate, gradient norm (default val_loss)",
    )
    p.add_argument("--title", help="figure title (default: none)")
    p.add_argument("--log-y", action="store_true", help="logarithmic y axis")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = plot_runs(args.run_dirs, args.out, args.metric, args.title, args.log_y)
    print(f"wrote {out} ({args.metric})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
