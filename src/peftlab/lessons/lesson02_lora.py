"""Figures and tables for the LoRA lesson: parameters vs rank, loss curves, singular values
of dW, and the markdown tables lesson 02 prints.

Figures are matplotlib Figure objects (no pyplot state, so a notebook shows each once and a
test can inspect it); tables are markdown strings built from numbers the package computes.
"""

from collections.abc import Mapping, Sequence

import torch
from matplotlib.figure import Figure
from torch import nn

from peftlab import lora, memory
from peftlab.tables import markdown_table

SMALL = (5.5, 3.2)
LESSON_TARGETS = {"q_proj, v_proj": ["q_proj", "v_proj"], "all linear layers": "all-linear"}
LESSON_RANKS = (1, 8, 64)


def results(
    model_name: str | None = None,
    *,
    r: int = 8,
    alpha: float = 16,
    steps: int = 120,
    seed: int = 0,
    full_steps: Sequence[int] = (30, 120),
) -> dict:
    """The lesson's counts on Llama-2-7B and on the embedded model, and its training runs: the
    hand-written loop, LoRA r on q and v, `steps` steps of 16 chats; full fine-tunes of
    `full_steps` steps with the same loop, for the rank of their updates (cached: a minute)."""
    from peftlab import base_model
    from peftlab.lessons.cache import cached

    run = {"r": r, "alpha": alpha, "target_modules": ("q_proj", "v_proj"), "steps": steps,
           "seed": seed}  # fmt: skip
    model, _ = base_model.load(model_name)
    llama = memory.meta_model("llama-2-7b")
    return {
        "llama": rank_rows(llama, LESSON_RANKS, LESSON_TARGETS),
        "model": rank_rows(model, LESSON_RANKS, LESSON_TARGETS),
        "q_proj entries": llama.model.layers[0].self_attn.q_proj.weight.numel(),
        "run": cached("lesson02-run", _train, model_name=model_name, run=run),
        "full": cached(
            "lesson02-full",
            _train_full,
            model_name=model_name,
            steps=tuple(full_steps),
            seed=seed,
            r=r,
        ),  # fmt: skip
    }


def quotes(results: Mapping) -> dict[str, str]:
    """Every table and number lesson 02 and notebook 02 quote, by region name."""
    llama, model, run = results["llama"], results["model"], results["run"]
    trained = run["result"]
    total = model[0]["total"]
    rows = [
        {"run": "base model", "steps": 0, "trainable": 0, "total": total, "final_loss": None,
         "rubric": run["base_rubric"]},
        {"run": f"LoRA r={run['r']} on q_proj, v_proj, hand-written loop", "steps": run["steps"],
         "trainable": trained.trainable_params, "total": trained.total_params,
         "final_loss": trained.losses[-1][1], "rubric": run["lora_rubric"]},
    ]  # fmt: skip
    qv, llama_total = llama[1]["q_proj, v_proj"], llama[0]["total"]
    full = results["full"]
    short, long = full[min(full)], full[max(full)]
    lora_run = {"steps": run["steps"], "rubric": run["lora_rubric"],
                "shares": lora_shares(trained.model, run["r"])}  # fmt: skip
    return {
        "llama ranks": rank_table(llama),
        "model ranks": rank_table(model),
        "model parameters": f"{total:,}",
        "llama parameters": f"{llama_total:,}",
        "llama r=8 q,v": f"{qv:,}",
        "results": results_table(rows),
        "spectra": spectra_table(full, lora_run, run["r"]),
        "full short steps": str(short["steps"]),
        "full long steps": str(long["steps"]),
        "full short top": _spread(short["shares"]),
        "full long top": _spread(long["shares"]),
        "random top": _spread(short["random shares"]),
        "notebook: lora of llama": f"{qv / 1e6:.1f} M",
        "notebook: llama total": f"{llama_total / 1e9:.1f} B",
        "notebook: lora share": lora.share_text(qv, llama_total + qv),
        "notebook: q_proj entries": f"{results['q_proj entries'] / 1e6:.1f} M",
        "notebook: r=8 count": f"$8\\cdot(4096+4096)={8 * (4096 + 4096):,}$".replace(",", "{,}"),
    }


def plot_params_vs_rank(
    ranks: Sequence[int], counts: Mapping[str, Sequence[int]], total: int
) -> Figure:
    """Trainable LoRA parameters against rank for each choice of target modules, beside the
    model's full parameter count (what full fine-tuning trains)."""
    fig = Figure(figsize=SMALL)
    ax = fig.add_subplot()
    for label, values in counts.items():
        ax.plot(ranks, values, marker="o", label=f"LoRA on {label}")
    ax.axhline(total, color="black", linestyle="--", label=f"full fine-tune ({total:,})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(ranks), [str(r) for r in ranks])
    ax.set_xlabel("rank r")
    ax.set_ylabel("trainable parameters")
    ax.set_title("LoRA trains r (d_in + d_out) numbers per adapted matrix")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_losses(curves: Mapping[str, Sequence[tuple[int, float]]]) -> Figure:
    """Training loss (reply tokens only) against step, one line per run."""
    fig = Figure(figsize=SMALL)
    ax = fig.add_subplot()
    for label, points in curves.items():
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on reply tokens")
    ax.set_title("Training loss")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_singular_values(spectra: Mapping[str, torch.Tensor], r: int, first: int = 32) -> Figure:
    """The first singular values of each dW, divided by the largest, on a log scale; a LoRA
    update of rank r has at most r that are not zero, and a random matrix's fall slowly."""
    fig = Figure(figsize=SMALL)
    ax = fig.add_subplot()
    for label, values in spectra.items():
        shown = (values[:first] / values[0]).clamp_min(1e-8)
        ax.plot(range(1, len(shown) + 1), shown.tolist(), marker=".", label=label)
    ax.axvline(r, color="gray", linestyle=":", label=f"r = {r}")
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel("sigma_i / sigma_1")
    ax.set_title("Singular values of the learned update dW")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def rank_rows(
    model: nn.Module, ranks: Sequence[int], targets: Mapping[str, lora.Targets]
) -> list[dict]:
    """LoRA's trainable parameters at each rank for each choice of target modules."""
    total = sum(p.numel() for p in model.parameters())
    return [
        {"r": r, "total": total}
        | {label: lora.lora_param_count(model, t, r) for label, t in targets.items()}
        for r in ranks
    ]


def _first_left(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A markdown table with the first column left-aligned and numbers right-aligned."""
    return markdown_table(header, body, ["---"] + ["---:"] * (len(header) - 1)) + "\n"


def rank_table(rows: Sequence[Mapping]) -> str:
    """r, then trainable parameters and their share for each target choice (`lora.share_text`:
    of all the adapted model's parameters, the adapters included, as peft prints it)."""
    labels = [k for k in rows[0] if k not in ("r", "total")]
    body = [
        [str(row["r"])]
        + [f"{row[k]:,} ({lora.share_text(row[k], row['total'] + row[k])})" for k in labels]
        for row in rows
    ]
    return _first_left(["r", *labels], body)


def results_table(rows: Sequence[Mapping]) -> str:
    """One line per run: what trained, for how many steps, how much of the model (`total` is
    every parameter of the trained model, adapters included), the final training loss (None for
    the untrained base) and the held-out rubric."""
    body = [
        [
            row["run"],
            str(row["steps"]),
            f"{row['trainable']:,} ({lora.share_text(row['trainable'], row['total'])})",
            "–" if row["final_loss"] is None else f"{row['final_loss']:.2f}",
            f"{row['rubric']:.2f}",
        ]
        for row in rows
    ]
    header = ["run", "steps", "trainable parameters", "final loss", "held-out rubric"]
    return _first_left(header, body)


SPECTRUM_LAYER = "model.layers.1.self_attn.v_proj"  # the layer whose spectrum the figure shows
PROJECTIONS = ("q_proj", "v_proj")


def random_like(delta: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A Gaussian matrix of `delta`'s shape, scaled to its Frobenius norm: an update with no
    structure, the baseline a spectrum is read against."""
    noise = torch.randn(delta.shape, generator=torch.Generator().manual_seed(seed))
    return noise * (delta.norm() / noise.norm())


def _spread(shares: Mapping[str, float]) -> str:
    """Lowest to highest of per-layer shares, as percentages ("75% to 81%")."""
    low, high = f"{min(shares.values()):.0%}", f"{max(shares.values()):.0%}"
    return low if low == high else f"{low} to {high}"


def spectra_table(full: Mapping[int, Mapping], lora_run: Mapping, r: int) -> str:
    """Share of ||dW||^2 in the top r singular directions of every q_proj and v_proj update
    (lowest to highest over the layers): full fine-tunes of each length, a random matrix of the
    same shape and norm, and LoRA (`lora_run`: its steps, shares and rubric)."""
    body = [[f"full fine-tune, {steps} steps", _spread(run["shares"]), f"{run['rubric']:.2f}"]
            for steps, run in sorted(full.items())]  # fmt: skip
    body.append(["random matrix, same shape and norm", _spread(full[min(full)]["random shares"]),
                 "–"])  # fmt: skip
    body.append([f"LoRA r={r}, {lora_run['steps']} steps", _spread(lora_run["shares"]),
                 f"{lora_run['rubric']:.2f}"])  # fmt: skip
    header = ["update ΔW", f"share of ‖ΔW‖² in its top {r} directions", "held-out rubric"]
    return markdown_table(header, body, ["---", "---:", "---:"]) + "\n"


def lora_shares(model: nn.Module, r: int) -> dict[str, float]:
    """Share of each LoRA update's ||dW||^2 in its top r directions (1.0: rank at most r)."""
    from peftlab import lora_train

    return {name: lora_train.energy_in_top(lora_train.lora_update(model, name), r)
            for name in lora.lora_layers(model)}  # fmt: skip


LESSON = "02-lora.md"
NOTEBOOK = "02_lora_from_scratch.ipynb"
TRAINS = True
TOLERANCE: dict = {}  # the training run is fp32: its figures repeat on every CPU


def _train(model_name: str | None, run: Mapping) -> dict:
    import copy

    from peftlab import base_model, lora_train, support_data

    model, tokenizer = base_model.load(model_name)
    base_rubric, _ = lora_train.heldout_rubric(model, tokenizer)
    settings = dict(run) | {"target_modules": list(run["target_modules"])}
    result = lora_train.train_lora_from_scratch(
        copy.deepcopy(model), tokenizer, support_data.finetune_set(seed=run["seed"]), **settings
    )
    lora_rubric, replies = lora_train.heldout_rubric(result.model, tokenizer)
    return {"base_rubric": base_rubric, "result": result, "lora_rubric": lora_rubric,
            "replies": replies, "r": run["r"], "steps": run["steps"]}  # fmt: skip


def _train_full(model_name: str | None, steps: Sequence[int], seed: int, r: int) -> dict:
    """Full fine-tunes of each length in `steps`, and what their updates look like: the share
    of each q_proj/v_proj update's energy in its top r directions, beside that of a random
    matrix of the same shape and norm; the singular values of SPECTRUM_LAYER's."""
    import copy

    from peftlab import base_model, lora_train, support_data

    model, tokenizer = base_model.load(model_name)
    examples = support_data.finetune_set(seed=seed)
    names = [f"model.layers.{i}.self_attn.{p}"
             for i in range(model.config.num_hidden_layers) for p in PROJECTIONS]  # fmt: skip
    runs = {}
    for n_steps in steps:
        result = lora_train.train_full(copy.deepcopy(model), tokenizer, examples, steps=n_steps,
                                       seed=seed)  # fmt: skip
        deltas = {name: lora_train.full_update(model, result.model, name) for name in names}
        noise = {name: random_like(delta, seed=i) for i, (name, delta) in enumerate(deltas.items())}
        runs[n_steps] = {
            "steps": n_steps, "losses": result.losses, "trainable": result.trainable_params,
            "total": result.total_params,
            "rubric": lora_train.heldout_rubric(result.model, tokenizer)[0],
            "shares": {n: lora_train.energy_in_top(d, r) for n, d in deltas.items()},
            "random shares": {n: lora_train.energy_in_top(d, r) for n, d in noise.items()},
            "spectrum": torch.linalg.svdvals(deltas[SPECTRUM_LAYER]),
            "random spectrum": torch.linalg.svdvals(noise[SPECTRUM_LAYER]),
        }  # fmt: skip
    return runs
