"""Lesson 08, what fine-tuning learns and what it forgets (notebook 08,
lessons/08-learning-and-forgetting.md).

`results` runs the notebook-scale protocol of `peftlab.forgetting` (cached: one run serves the
notebook and the lesson test): a learning-rate sweep for full fine-tuning and LoRA, learning and
forgetting curves for full fine-tuning and LoRA at three ranks and two target sets, alpha/r
against rsLoRA's alpha/sqrt(r) across ranks, attention-only against all-linear LoRA at one
parameter count, and overfitting on a small slice through transformers' Trainer. The functions
below format its tables and draw its figures. `benchmarks/learning_forgetting.py` runs wider
grids, longer, on any causal LM.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from matplotlib.figure import Figure

from peftlab import forgetting
from peftlab.forgetting import ATTENTION, FULL, QV, Config, ForgettingRun, Stat, SweepBudget, lora
from peftlab.seed import one_thread
from peftlab.tables import markdown_table

LESSON = "08-learning-and-forgetting.md"
NOTEBOOK = "08_learning_and_forgetting.ipynb"
TRAINS = True
LESSON_PROTOCOL = SweepBudget()
FULL_LRS = (3e-4, 1e-3, 3e-3, 1e-2)
LORA_LRS = (3e-3, 1e-2, 3e-2)
REFERENCE = lora(8)  # the course's LoRA: rank 8 on every linear layer
RANKS = (1, 8, 64)
CURVES = (FULL, lora(1), REFERENCE, lora(64), lora(8, QV))
RSLORA = tuple(lora(r, rslora=True) for r in RANKS[1:])  # at r=1 both rules are one scale
MATCHED = lora(19, ATTENTION)  # 4 x 19 x (192+192) = 3 x 8 x (192+512) + 4 x 8 x 384 per layer
OVERFIT = {"n_examples": 8, "epochs": 12, "lr": 1e-2, "patience": 3}
# Losses are computed on one thread and repeat on one CPU; another CPU's kernels move their last
# digits (a few thousandths after 16 steps), and a reply of the 8 held-out ones moves a score.
ONE_REPLY = 1 / LESSON_PROTOCOL.n_heldout + 0.01
LOSS = 0.02
TOLERANCE = {
    "lr table": {"val loss": LOSS, "spread": LOSS, "forgetting": LOSS, "score": ONE_REPLY},
    "curves": {
        "val loss at 8": LOSS,
        "val loss": LOSS,
        "spread": LOSS,
        "forgetting": LOSS,
        "forgetting spread": LOSS,
        "score": ONE_REPLY,
    },  # fmt: skip
    "rank rule": {"val loss": LOSS, "update norm": 0.5, "forgetting": LOSS},
    "first step": {"loss drop of the first step / r=1": 0.05},
    "matched": {"val loss": LOSS, "spread": LOSS, "forgetting": LOSS, "score": ONE_REPLY},
    "overfit": {"best val loss": LOSS, "train loss at stop": LOSS},
    "vertex ratio": 1.0,
    "full forgetting": LOSS,
    "lora forgetting": LOSS,
    "full val": LOSS,
    "lora val": LOSS,
    "full lower val": LOSS,
    "full lower forgetting": LOSS,
    "qv val": LOSS,
    "qv forgetting": LOSS,
}


FIRST_STEP = {"width": 256, "batch": 64, "alpha": 16, "lr": 1e-4, "seeds": 16}


def results(
    model_name: str | None = None, *, progress: Callable[[str], None] | None = None
) -> dict:
    """Every run of the lesson, on one thread so that losses repeat. About a minute and a half
    the first time on one core, then read from `lessons.cache`."""
    from peftlab.lessons.cache import cached

    runs = cached("lesson08", _compute, live={"progress": progress}, model_name=model_name,
                  protocol=LESSON_PROTOCOL, full_lrs=FULL_LRS, lora_lrs=LORA_LRS,
                  overfit=tuple(sorted(OVERFIT.items())))  # fmt: skip
    return runs | {"first_step": first_step_rows()}


# --- quotes -------------------------------------------------------------------------------------
def quotes(results: Mapping) -> dict[str, str]:
    """Every table and number lesson 08 quotes, by region name."""
    full, ref = at_best(results, FULL), at_best(results, REFERENCE)
    grid, vertex = lr_ratio(results)
    matched = at_best(results, results["matched"])
    base = results["base"]
    best_epochs = [o.best_epoch for o in results["overfit"]]
    lower = lower_rate(results, FULL, results["full_lrs"])
    full_lower = forgetting.select(results["runs"], FULL.name, lower)
    qv = at_best(results, CURVES[-1])
    return {
        "protocol": protocol_text(results),
        "lr table": lr_table(results),
        "curves": curves_table(results),
        "rank rule": rank_rule_table(results),
        "first step": first_step_table(results["first_step"]),
        "matched": matched_table(results),
        "overfit": overfit_table(results),
        "overfit setup": overfit_text(results),
        "full lr": f"{best(results, FULL):g}",
        "lora lr": f"{best(results, REFERENCE):g}",
        "grid ratio": f"{grid:.1f}x",
        "vertex ratio": f"{vertex:.1f}x",
        "full val": f"{stat(full, val).mean:.3f}",
        "lora val": f"{stat(ref, val).mean:.3f}",
        "full forgetting": f"{stat(full, forgot).mean:+.3f}",
        "lora forgetting": f"{stat(ref, forgot).mean:+.3f}",
        "full lower lr": f"{lower:g}",
        "full lower val": f"{stat(full_lower, val).mean:.3f}",
        "full lower forgetting": f"{stat(full_lower, forgot).mean:+.3f}",
        "qv val": f"{stat(qv, val).mean:.3f}",
        "qv forgetting": f"{stat(qv, forgot).mean:+.3f}",
        "base val": f"{base.val_loss:.3f}",
        "base text loss": f"{base.forget_loss:.3f}",
        "base text ppl": f"{math.exp(base.forget_loss):.2f}",
        "matched params": f"{matched[0].trainable_params:,}",
        "best epochs": ", ".join(str(e) for e in best_epochs),
    }


def first_step_rows(ranks: Sequence[int] = RANKS) -> list[tuple[int, str, float, float]]:
    """(r, rule, scale, loss drop of one AdamW step relative to r=1) for a peft LoRA on one
    frozen linear layer (a regression to random targets), at one learning rate, the mean over
    `FIRST_STEP["seeds"]` draws of the adapter's A.

    Why the best rate does or does not move with the rank: B starts at zero and AdamW's first
    step moves every entry of B by about the rate, so B A sums r rank-one pieces that all lower
    the loss; the drop grows as r times the scale. Under alpha/r that is alpha at every rank;
    under alpha/sqrt(r) it is alpha times sqrt(r), so the rate must come down as r goes up."""
    import torch
    from peft import LoraConfig, get_peft_model

    from peftlab.seed import seed_everything

    width, n, alpha = FIRST_STEP["width"], FIRST_STEP["batch"], FIRST_STEP["alpha"]
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(width, width, generator=gen) / math.sqrt(width)
    inputs, targets = torch.randn(n, width, generator=gen), torch.randn(n, width, generator=gen)

    def drop(r: int, rslora: bool, seed: int) -> float:
        seed_everything(seed)
        base = torch.nn.Sequential(torch.nn.Linear(width, width, bias=False))
        base[0].weight.data.copy_(weight)
        config = LoraConfig(r=r, lora_alpha=alpha, target_modules=["0"], use_rslora=rslora)
        model = get_peft_model(base, config)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=FIRST_STEP["lr"], weight_decay=0.0)
        before = torch.nn.functional.mse_loss(model(inputs), targets)
        before.backward()
        optimizer.step()
        with torch.no_grad():
            after = torch.nn.functional.mse_loss(model(inputs), targets)
        return (before - after).item()

    rows = []
    with one_thread():
        for rule, rslora in (("alpha/r", False), ("alpha/sqrt(r)", True)):
            drops = [sum(drop(r, rslora, seed) for seed in range(FIRST_STEP["seeds"]))
                     for r in ranks]  # fmt: skip
            rows += [(r, rule, lora(r, rslora=rslora).scale, d / drops[0])
                     for r, d in zip(ranks, drops, strict=True)]  # fmt: skip
    return rows


def first_step_table(rows: Sequence[tuple[int, str, float, float]]) -> str:
    body = [(f"{r}", rule, f"{scale:g}", f"{rel:.2f}") for r, rule, scale, rel in rows]
    header = ("r", "rule", "scale", "loss drop of the first step / r=1")
    return markdown_table(header, body, ("---:", "---", "---:", "---:"))


def _compute(model_name, protocol, full_lrs, lora_lrs, overfit, progress=None) -> dict:
    with one_thread():
        return run_grids(protocol, full_lrs, lora_lrs, dict(overfit), MATCHED, model_name, progress)


def run_grids(
    protocol: SweepBudget,
    full_lrs: Sequence[float],
    lora_lrs: Sequence[float],
    overfit: Mapping,
    matched: Config = MATCHED,
    model_name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The lesson's runs (the benchmark's too, with wider grids): both rate sweeps, then at
    LoRA's best rate the other curve configs, rsLoRA and `matched` (attention-only, also at the
    next rate up), then `forgetting.overfit` once per seed with `overfit`'s settings."""
    say = progress or (lambda _line: None)
    runs = forgetting.sweep([FULL], full_lrs, protocol, model_name, say)
    runs += forgetting.sweep([REFERENCE], lora_lrs, protocol, model_name, say)
    lr = forgetting.best_lr(runs, REFERENCE.name)
    extra = [c for c in CURVES if c not in (FULL, REFERENCE)] + list(RSLORA)
    runs += forgetting.sweep(extra, [lr], protocol, model_name, say)
    above = [x for x in sorted(lora_lrs) if x >= lr][:2]  # attention-only may want more
    runs += forgetting.sweep([matched], above, protocol, model_name, say)
    fits = [forgetting.overfit(seed, budget=protocol, model_name=model_name, **overfit)
            for seed in protocol.seeds]  # fmt: skip
    return {"protocol": protocol, "full_lrs": tuple(full_lrs), "lora_lrs": tuple(lora_lrs),
            "runs": runs, "matched": matched, "overfit": fits, "overfit_settings": dict(overfit),
            "base": runs[0].points[0]}  # fmt: skip


# --- reading the results -------------------------------------------------------------------------
def best(results: Mapping, config: Config) -> float:
    return forgetting.best_lr(results["runs"], config.name)


def at_best(results: Mapping, config: Config) -> list[ForgettingRun]:
    """The config's runs (every seed) at its best rate (for one-rate configs: their rate)."""
    return forgetting.select(results["runs"], config.name, best(results, config))


def stat(runs: Sequence[ForgettingRun], value: Callable[[ForgettingRun], float]) -> Stat:
    return Stat.of(value(r) for r in runs)


def val(r: ForgettingRun) -> float:
    return r.final.val_loss


def forgot(r: ForgettingRun) -> float:
    return r.forgetting


def lr_ratio(results: Mapping) -> tuple[float, float]:
    """LoRA's best rate over full fine-tuning's: on the grid, and between grid points."""
    runs = results["runs"]
    grid = best(results, REFERENCE) / best(results, FULL)
    vertex = forgetting.vertex_lr(runs, REFERENCE.name) / forgetting.vertex_lr(runs, FULL.name)
    return grid, vertex


def lower_rate(results: Mapping, config: Config, lrs: Sequence[float]) -> float:
    """The grid rate just below the config's best (the best itself if it is the lowest)."""
    ordered = sorted(lrs)
    return ordered[max(0, ordered.index(best(results, config)) - 1)]


def _pm(s: Stat, digits: int = 3) -> tuple[str, str]:
    return f"{s.mean:.{digits}f}", f"{s.spread:.{digits}f}"


# --- tables -------------------------------------------------------------------------------------
def lr_table(results: Mapping) -> str:
    """Final validation loss, forgetting and score at each rate of both grids (mean over seeds,
    spread the population standard deviation)."""
    rows = []
    for config, lrs in ((FULL, results["full_lrs"]), (REFERENCE, results["lora_lrs"])):
        chosen = best(results, config)
        for lr in lrs:
            runs = forgetting.select(results["runs"], config.name, lr)
            v, f, s = stat(runs, val), stat(runs, forgot), stat(runs, lambda r: r.score)
            rows.append((config.name, f"{lr:g}" + (" (best)" if lr == chosen else ""),
                         *_pm(v), f"{f.mean:+.3f}", f"{s.mean:.2f}"))  # fmt: skip
    header = ("method", "lr", "val loss", "spread", "forgetting", "score")
    return markdown_table(header, rows, ("---", "---:", "---:", "---:", "---:", "---:"))


def curves_table(results: Mapping) -> str:
    """Each curve config at its rate: learning (validation loss half-way and at the end),
    forgetting at the end, held-out score, over seeds."""
    protocol = results["protocol"]
    mid = protocol.evals[0]
    rows = []
    for config in CURVES:
        runs = at_best(results, config)
        v, f = stat(runs, val), stat(runs, forgot)
        half = stat(runs, lambda r: next(p.val_loss for p in r.points if p.step == mid))
        s = stat(runs, lambda r: r.score)
        rows.append((config.name, f"{runs[0].trainable_params:,}", f"{runs[0].lr:g}",
                     f"{half.mean:.3f}", *_pm(v), f"{f.mean:+.3f}", f"{f.spread:.3f}",
                     f"{s.mean:.2f}"))  # fmt: skip
    header = ("config", "trainable params", "lr", f"val loss at {mid}", "val loss", "spread",
              "forgetting", "forgetting spread", "score")  # fmt: skip
    return markdown_table(header, rows, ("---",) + ("---:",) * 8)


def rank_rule_rows(results: Mapping) -> list[tuple[int, str, float, Stat, Stat, Stat]]:
    """(r, rule, scale, val loss, update norm, forgetting) at LoRA's best rate."""
    lr = best(results, REFERENCE)
    rows = []
    for rule, rs in (("alpha/r", False), ("alpha/sqrt(r)", True)):
        for r in RANKS:
            config = lora(r, rslora=rs and r > 1)
            runs = forgetting.select(results["runs"], config.name, lr)
            rows.append((r, rule, lora(r, rslora=rs).scale, stat(runs, val),
                         stat(runs, lambda x: x.update_norm), stat(runs, forgot)))  # fmt: skip
    return rows


def rank_rule_table(results: Mapping) -> str:
    rows = [(f"{r}", rule, f"{scale:g}", f"{v.mean:.3f}", f"{n.mean:.1f}", f"{f.mean:+.3f}")
            for r, rule, scale, v, n, f in rank_rule_rows(results)]  # fmt: skip
    header = ("r", "rule", "scale", "val loss", "update norm", "forgetting")
    return markdown_table(header, rows, ("---:", "---", "---:", "---:", "---:", "---:"))


def matched_table(results: Mapping) -> str:
    """Attention-only LoRA at r=19 against all-linear at r=8: the same trainable parameters."""
    rows = []
    for config in (results["matched"], REFERENCE):
        runs = at_best(results, config)
        v, f, s = stat(runs, val), stat(runs, forgot), stat(runs, lambda r: r.score)
        lrs = sorted({r.lr for r in forgetting.select(results["runs"], config.name)})
        tried = ", ".join(f"{x:g}" for x in lrs)
        rows.append((config.name, f"{runs[0].trainable_params:,}", f"{runs[0].lr:g} of {tried}",
                     *_pm(v), f"{f.mean:+.3f}", f"{s.mean:.2f}"))  # fmt: skip
    header = ("config", "trainable params", "lr", "val loss", "spread", "forgetting", "score")
    return markdown_table(header, rows, ("---", "---:", "---:", "---:", "---:", "---:", "---:"))


def overfit_table(results: Mapping) -> str:
    rows = [(f"{o.seed}", f"{o.best_epoch}", f"{o.best_val_loss:.3f}", f"{o.stopped_epoch}",
             f"{o.train_loss[-1]:.3f}") for o in results["overfit"]]  # fmt: skip
    header = ("seed", "best epoch", "best val loss", "stopped after epoch", "train loss at stop")
    return markdown_table(header, rows, ("---:",) * 5)


def protocol_text(results: Mapping) -> str:
    p: SweepBudget = results["protocol"]
    return (
        f"{p.steps} steps of {p.batch_size} chats from {p.n_train - p.n_val} fine-tune examples "
        f"({p.n_val} held back for validation), learning and forgetting measured after steps "
        f"{', '.join(str(e) for e in p.evals)}, forgetting on {p.n_forget} held-out pretraining "
        f"documents, {p.n_heldout} held-out complaints scored, {len(p.seeds)} seeds"
    )


def overfit_text(results: Mapping) -> str:
    o = results["overfit_settings"]
    return (
        f"LoRA r8 on {o['n_examples']} examples for up to {o['epochs']} epochs at lr "
        f"{o['lr']:g}, early stopping patience {o['patience']}"
    )


# --- figures ------------------------------------------------------------------------------------
def _mean_curve(
    runs: Sequence[ForgettingRun],
) -> tuple[list[float], list[float], list[float], list[float]]:
    steps = range(len(runs[0].points))
    xs = [Stat.of(r.points[i].val_loss for r in runs) for i in steps]
    ys = [Stat.of(r.points[i].forget_loss - r.points[0].forget_loss for r in runs) for i in steps]
    return (
        [s.mean for s in xs],
        [s.mean for s in ys],
        [s.spread for s in xs],
        [s.spread for s in ys],
    )


def plot_learning_forgetting(results: Mapping, configs: Sequence[Config] = CURVES) -> Figure:
    """One curve per config through its points along training (base, half-way, end): learning
    (validation loss, falling to the right) against forgetting (rise of the held-out text loss).
    Error bars: the spread over seeds."""
    fig = Figure(figsize=(7.0, 4.0), layout="constrained")
    ax = fig.subplots()
    for config in configs:
        x, y, dx, dy = _mean_curve(at_best(results, config))
        ax.errorbar(x, y, xerr=dx, yerr=dy, marker="o", capsize=2, label=config.name)
    ax.invert_xaxis()
    ax.set_xlabel("support validation loss (learning: further right is better)")
    ax.set_ylabel("rise in held-out text loss (forgetting)")
    ax.set_title("learning vs forgetting along training, each at its rate (toy scale)", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def plot_lr_sweep(results: Mapping) -> Figure:
    """Final validation loss and forgetting against the learning rate (log), both methods."""
    fig = Figure(figsize=(7.0, 3.2), layout="constrained")
    loss_ax, forget_ax = fig.subplots(1, 2, sharex=True)
    for config, lrs in ((FULL, results["full_lrs"]), (REFERENCE, results["lora_lrs"])):
        stats = [forgetting.select(results["runs"], config.name, lr) for lr in lrs]
        for ax, value in ((loss_ax, val), (forget_ax, forgot)):
            s = [stat(runs, value) for runs in stats]
            ax.errorbar(lrs, [x.mean for x in s], yerr=[x.spread for x in s], marker="o",
                        capsize=2, label=config.name)  # fmt: skip
    for ax, title in ((loss_ax, "support validation loss"), (forget_ax, "forgetting")):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_title(title, fontsize=9)
    loss_ax.legend(fontsize=8)
    return fig


def plot_rank_rule(results: Mapping) -> Figure:
    """Update norm and validation loss against r under alpha/r and alpha/sqrt(r), one rate."""
    fig = Figure(figsize=(7.0, 3.0), layout="constrained")
    norm_ax, loss_ax = fig.subplots(1, 2, sharex=True)
    rows = rank_rule_rows(results)
    for rule in ("alpha/r", "alpha/sqrt(r)"):
        mine = [row for row in rows if row[1] == rule]
        rs = [row[0] for row in mine]
        norm_ax.errorbar(rs, [row[4].mean for row in mine], yerr=[row[4].spread for row in mine],
                         marker="o", capsize=2, label=rule)  # fmt: skip
        loss_ax.errorbar(rs, [row[3].mean for row in mine], yerr=[row[3].spread for row in mine],
                         marker="o", capsize=2, label=rule)  # fmt: skip
    for ax, title in ((norm_ax, "||scale * B A|| over all layers"), (loss_ax, "validation loss")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("rank r")
        ax.set_title(title, fontsize=9)
    norm_ax.legend(fontsize=8)
    return fig


def plot_overfit(results: Mapping) -> Figure:
    """Train and validation loss per epoch for each seed; the best epoch marked."""
    fig = Figure(figsize=(7.0, 3.2), layout="constrained")
    ax = fig.subplots()
    for i, o in enumerate(results["overfit"]):
        color = f"C{i}"
        ax.plot(o.epochs, o.train_loss, ls="--", color=color, label=f"train, seed {o.seed}")
        ax.plot(o.epochs, o.val_loss, color=color, marker="o", label=f"validation, seed {o.seed}")
        ax.axvline(o.best_epoch, color=color, lw=0.8, ls=":")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("a small slice, many epochs: validation turns up (dotted: best epoch)",
                 fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    return fig
