"""Lesson 12, preferences (DPO) and rewards (GRPO) with LoRA (notebook 12,
lessons/12-preferences-and-rewards.md).

`results()` computes everything once (cached): per seed, SFT on the chosen replies, SFT then
DPO, and DPO alone; GRPO from a shorter SFT (one whose samples still differ in reward) at LoRA
ranks 1, 8 and 64 under one budget. The six
jobs run two at a time in worker processes, each on one thread and seeded, so they give what
one process gives. The pairs, the reference's memory and the reward hack are computed at once.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from matplotlib.figure import Figure

from peftlab import base_model, finetune, grpo, memory, preferences, rubric, support_data
from peftlab.generate import generate
from peftlab.seed import one_thread, seed_everything
from peftlab.tables import markdown_table

LESSON = "12-preferences-and-rewards.md"
NOTEBOOK = "12_preferences_and_rewards.ipynb"
TRAINS = True
SEEDS = (0, 1, 2)
RANKS = (1, 8, 64)
RUNS = ("SFT only", "SFT then DPO", "DPO only")
GB = 1e9


@dataclass(frozen=True)
class Budget:
    """Every size of the lesson's runs, sized so that all of them compute in about 100 s on
    two cores (the notebook's budget is 120 s cold)."""

    n_pairs: int = 64  # training pairs, on the fine-tune set's complaints
    n_eval_pairs: int = 16  # held-out pairs: reward accuracy, margins, KL
    n_heldout: int = 20  # held-out complaints answered greedily: rubric, faithful share
    max_new_tokens: int = 48
    r: int = 8
    alpha: int = 16
    learning_rate: float = 5e-3
    sft_steps: int = 32  # past the step (20 to 28 here) where greedy replies turn polite
    sft_batch: int = 8
    dpo_steps: int = 12
    dpo_batch: int = 4  # pairs per step (8 sequences)
    beta: float = preferences.DEFAULT_BETA
    checkpoint_every: int = 6  # DPO steps between evaluations along training
    logps_every: int = 2  # DPO steps between the held-out pairs' log-probabilities
    grpo_sft_steps: int = 16  # GRPO's start: SFT stopped before the replies turn polite
    grpo_steps: int = 16
    grpo_prompts: int = 2  # complaints per step
    grpo_group: int = 8  # samples per complaint
    grpo_alpha: int = 32  # the same alpha at every rank ("LoRA Without Regret" does too)
    grpo_learning_rate: float = 5e-3


BUDGET = Budget()
# Replies are generated greedily and losses computed on one thread: they repeat on one CPU; on
# another CPU's kernels a greedy reply may change (one of n_heldout in a share).
ONE_REPLY = 1 / BUDGET.n_heldout + 0.01
LOGP = 0.5  # a reply's log-probability, summed over its tokens
TOLERANCE = {
    "runs": {"rubric": ONE_REPLY, "faithful": ONE_REPLY, "accuracy": 0.07, "margin": 0.05,
             "KL": 0.02, "log p chosen": LOGP, "log p rejected": LOGP},
    "grpo": {"reward before": 2 * ONE_REPLY, "reward after": 2 * ONE_REPLY,
             "samples, first 4 steps": 0.1, "samples, last 4 steps": 0.1},
    "base logp chosen": LOGP, "sft logp chosen": LOGP, "dpo only logp chosen": LOGP,
    "dpo only logp rejected": LOGP, "base logp rejected": LOGP, "dpo only accuracy": 0.07,
    "sft logp rejected": LOGP, "sft dpo logp chosen": LOGP, "sft dpo logp rejected": LOGP,
}  # fmt: skip


def results(budget: Budget = BUDGET, workers: int = 2) -> dict:
    """Everything the lesson shows: example pairs, the reference's memory, the reward hack, and
    the runs (cached: computed once, shared by the notebook and the tests)."""
    from peftlab.lessons.cache import cached

    model, _ = base_model.load()
    pairs = preferences.pairs(budget.n_pairs)
    heldout = support_data.heldout_complaints(budget.n_heldout)
    runs = cached("lesson12-runs", _all_runs, budget=budget, live={"workers": workers})
    example = runs["grpo"][RANKS[0]]["after"]["example"]
    return {
        "budget": asdict(budget),
        "examples": [asdict(next(p for p in pairs if p.flaw == f)) for f in preferences.FLAWS],
        "memory": _memory(model),
        "hack": _hack(heldout),
        "grpo example marks": _marks(example, heldout[0]),
        **runs,
    }


def quotes(results: dict) -> dict[str, str]:
    b = results["budget"]
    rows = run_rows(results)
    m = results["memory"]
    return {
        "runs": runs_table(results),
        "grpo": grpo_table(results),
        "memory": memory_table(results),
        "pairs": pairs_table(results),
        "n pairs": str(b["n_pairs"]),
        "sft steps": str(b["sft_steps"]),
        "dpo steps": str(b["dpo_steps"]),
        "grpo steps": str(b["grpo_steps"]),
        "group": str(b["grpo_group"]),
        "grpo prompts": str(b["grpo_prompts"]),
        "grpo alpha": str(b["grpo_alpha"]),
        "n seeds": str(len(SEEDS)),
        "beta": str(b["beta"]),
        "n heldout": str(b["n_heldout"]),
        "sft rubric": f"{rows['SFT only']['rubric'][0]:.2f}",
        "sft dpo rubric": f"{rows['SFT then DPO']['rubric'][0]:.2f}",
        "dpo only rubric": f"{rows['DPO only']['rubric'][0]:.2f}",
        "reference bytes": f"{m['held']['separate copy']:,}",
        "7b saved": f"{(m['7b']['separate'] - m['7b']['adapter-off']) / GB:.1f} GB",
        "dpo collapse": "; ".join(
            f"seed {c['seed']}: {c['best']['rubric']:.2f} at step {c['best']['step']}, "
            f"{c['end']['rubric']:.2f} at step {c['end']['step']}"
            for c in collapses(results)
        )
        or "none",
        "grpo example marks": example_marks(results["grpo example marks"]),
        "grpo sft steps": str(b["grpo_sft_steps"]),
        **{
            f"{short} logp {side}": f"{rows[run][f'logp_{side}'][0]:.1f}"
            for short, run in LOGP_ROWS.items()
            for side in ("chosen", "rejected")
        },
        "dpo only accuracy": f"{rows['DPO only']['accuracy'][0]:.2f}",
        "hack reply": results["hack"]["reply"],
        "hack reward": f"{results['hack']['reward']:.2f}",
    }


# --- the runs -------------------------------------------------------------------------------
def _all_runs(budget: Budget, workers: int) -> dict:
    from peftlab.worker_processes import map_in_processes

    jobs = [("dpo", s) for s in SEEDS] + [("grpo", r) for r in RANKS]
    if workers > 1:
        done = map_in_processes("peftlab.lessons.lesson12_preferences:job", (budget,), jobs,
                                workers)  # fmt: skip
    else:
        done = {j: job(j, budget) for j in jobs}
    return {"dpo": {s: done[("dpo", s)] for s in SEEDS},
            "grpo": {r: done[("grpo", r)] for r in RANKS}}  # fmt: skip


def job(item: tuple[str, int], budget: Budget) -> dict:
    """One seeded job, on one thread: ("dpo", seed) or ("grpo", rank)."""
    kind, value = item
    with one_thread():
        return _dpo_job(value, budget) if kind == "dpo" else _grpo_job(value, budget)


class _Judge:
    """Scores a model: greedy replies to the held-out complaints (rubric, faithful share,
    reward) and, on held-out pairs, reward accuracy, margin and KL to the reference."""

    def __init__(self, tokenizer, budget: Budget):
        self.tokenizer, self.budget = tokenizer, budget
        self.complaints = support_data.heldout_complaints(budget.n_heldout)
        pairs = preferences.heldout_pairs(budget.n_eval_pairs)
        rows = [preferences.encode_pair(tokenizer, p) for p in pairs]
        self.batch = preferences.collate(rows, tokenizer.pad_token_id)

    def replies(self, model) -> dict:
        was_training = model.training
        model.eval()
        replies = generate(model, self.tokenizer, self.complaints,
                           max_new_tokens=self.budget.max_new_tokens)  # fmt: skip
        model.train(was_training)
        pairs = list(zip(replies, self.complaints, strict=True))
        return {
            "rubric": rubric.mean_score(replies, self.complaints),
            "faithful": sum(rubric.faithful(r, c) for r, c in pairs) / len(pairs),
            "reward": sum(grpo.reward(r, c) for r, c in pairs) / len(pairs),
            "example": replies[0],
        }

    def logps(self, model) -> dict:
        """Mean log-probability of the held-out pairs' chosen and rejected replies."""
        import torch

        with torch.no_grad():
            chosen, rejected = preferences.sequence_logps(model, self.batch).chunk(2)
        return {"logp_chosen": chosen.mean().item(), "logp_rejected": rejected.mean().item()}

    def pairs(self, model) -> dict:
        m = preferences.evaluate(model, self.batch, self.budget.beta)
        return {k: m[k] for k in ("accuracy", "margin", "logp_chosen", "logp_rejected", "kl")}

    def __call__(self, model) -> dict:
        return self.replies(model) | self.pairs(model)


def _logps(judged: dict) -> dict:
    return {k: judged[k] for k in ("logp_chosen", "logp_rejected")}


def _policy(model, budget: Budget, r: int | None = None, alpha: int | None = None):
    return finetune.build_peft_model(model, r=r or budget.r, alpha=alpha or budget.alpha,
                                     target_modules="all-linear")  # fmt: skip


def _sft(seed: int, budget: Budget, steps: int | None = None):
    """The base model with a LoRA adapter trained on the chosen replies (SFT), and its fit."""
    seed_everything(seed)
    model, tokenizer = base_model.load()
    policy = _policy(model, budget)
    fit = preferences.train_sft(policy, tokenizer, preferences.pairs(budget.n_pairs),
                                steps=steps or budget.sft_steps, batch_size=budget.sft_batch,
                                learning_rate=budget.learning_rate, seed=seed)  # fmt: skip
    return policy, tokenizer, fit


def _dpo(policy, tokenizer, judge: _Judge, seed: int, budget: Budget, start: dict) -> dict:
    """DPO on `policy` (its adapter off is the reference), judged along training and at the end;
    `start` is the judgement of the model it starts from (the reference)."""

    def watch(step) -> dict:
        if step.step == budget.dpo_steps:
            return {}  # the end is judged below
        if step.step % budget.checkpoint_every == 0:
            judged = judge(step.model)
            return {"judged": {"step": step.step} | judged, "heldout": _logps(judged)}
        if step.step % budget.logps_every == 0:
            return {"heldout": judge.logps(step.model)}
        return {}

    fit = preferences.train_dpo(policy, tokenizer, preferences.pairs(budget.n_pairs),
                                steps=budget.dpo_steps, batch_size=budget.dpo_batch,
                                learning_rate=budget.learning_rate, seed=seed,
                                beta=budget.beta, on_step=watch)  # fmt: skip
    end = judge(policy)
    checkpoints = [{"step": 0} | {k: start[k] for k in ("rubric", "faithful", "reward")}]
    checkpoints += [m["judged"] for m in fit.measured if "judged" in m]
    checkpoints.append({"step": budget.dpo_steps} | end)
    train = [{k: m[k] for k in ("loss", "accuracy", "margin", "logp_chosen", "logp_rejected")}
             for m in fit.measured]  # fmt: skip
    # the held-out pairs' log-probabilities along training, from the start (the reference)
    heldout = [{"step": 0} | _logps(start)]
    heldout += [{"step": i + 1} | m["heldout"]
                for i, m in enumerate(fit.measured) if "heldout" in m]  # fmt: skip
    heldout.append({"step": budget.dpo_steps} | _logps(end))
    return {"end": end, "checkpoints": checkpoints, "train": train, "heldout": heldout}


def _dpo_job(seed: int, budget: Budget) -> dict:
    sft, tokenizer, sft_fit = _sft(seed, budget)
    judge = _Judge(tokenizer, budget)
    sft_end = judge(sft)
    out = {"SFT only": {"end": sft_end, "sft_losses": sft_fit.losses}}
    # SFT then DPO: the SFT adapter merged in, a fresh adapter on top; the reference (adapter
    # off) is then the SFT model, as in the DPO paper's recipe. A fresh adapter starts equal to
    # its reference, so the SFT model's judgement is its start.
    policy = _policy(sft.merge_and_unload(), budget)
    out["SFT then DPO"] = _dpo(policy, tokenizer, judge, seed, budget, start=sft_end)
    seed_everything(seed)
    base, _ = base_model.load()
    policy = _policy(base, budget)
    base_end = judge(policy)  # B = 0: the base model's replies; KL 0, accuracy from the base
    out["DPO only"] = _dpo(policy, tokenizer, judge, seed, budget, start=base_end)
    out["base"] = base_end
    return out


def _grpo_job(rank: int, budget: Budget) -> dict:
    sft, tokenizer, _ = _sft(SEEDS[0], budget, steps=budget.grpo_sft_steps)
    judge = _Judge(tokenizer, budget)
    seed_everything(SEEDS[0])
    policy = _policy(sft.merge_and_unload(), budget, r=rank, alpha=budget.grpo_alpha)
    before = judge.replies(policy)
    complaints = [p.complaint for p in preferences.pairs(budget.n_pairs)]
    fit = grpo.train(policy, tokenizer, complaints, steps=budget.grpo_steps,
                     prompts_per_step=budget.grpo_prompts, group_size=budget.grpo_group,
                     learning_rate=budget.grpo_learning_rate, seed=SEEDS[0],
                     max_new_tokens=budget.max_new_tokens)  # fmt: skip
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    return {"before": before, "after": judge.replies(policy), "trainable": trainable,
            "rewards": [m["reward"] for m in fit.measured],
            "tied": [m["tied_groups"] for m in fit.measured]}  # fmt: skip


# --- what is computed at once ---------------------------------------------------------------
def _memory(model) -> dict:
    held = preferences.reference_bytes(model)
    lora = dict(method="lora", precision="fp32", target_modules="all-linear")
    toy = {ref: memory.estimate(model.config, reference=ref, **lora).total
           for ref in ("separate", "adapter-off")}  # fmt: skip
    big = {ref: memory.estimate("llama-2-7b", method="lora", reference=ref).total
           for ref in ("separate", "adapter-off")}  # fmt: skip
    full = memory.estimate("llama-2-7b", method="full", reference="separate").total
    return {"held": held, "toy": toy, "7b": big, "7b full": full,
            "params": memory.count_params(model.config)}  # fmt: skip


def _marks(reply: str, complaint: str) -> dict:
    """The rubric's checks on a reply, its score, its faithfulness and its reward."""
    marks = rubric.score_reply(reply, complaint)
    return marks | {"faithful": rubric.faithful(reply, complaint),
                    "reward": grpo.reward(reply, complaint)}  # fmt: skip


def _hack(complaints: Sequence[str]) -> dict:
    replies = [grpo.hack_reply(c) for c in complaints]
    return {
        "complaint": complaints[0],
        "reply": replies[0],
        "reward": sum(grpo.reward(r, c) for r, c in zip(replies, complaints, strict=True))
        / len(complaints),
    }


# --- tables and figures ---------------------------------------------------------------------
def _spread(values: Sequence[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


LOGP_ROWS = {
    "base": "base model",
    "sft": "SFT only",
    "sft dpo": "SFT then DPO",
    "dpo only": "DPO only",
}
MEASURES = ("rubric", "faithful", "accuracy", "margin", "kl", "logp_chosen", "logp_rejected")


def run_rows(results: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """Per run, each end measure's mean and standard deviation over the seeds."""
    rows = {}
    for run in RUNS:
        ends = [results["dpo"][s][run]["end"] for s in SEEDS]
        rows[run] = {k: _spread([e[k] for e in ends]) for k in MEASURES}
    rows["base model"] = {k: _spread([results["dpo"][s]["base"][k] for s in SEEDS])
                          for k in MEASURES}  # fmt: skip
    return rows


def collapses(results: dict, drop: float = 0.3) -> list[dict]:
    """Seeds whose SFT-then-DPO rubric fell by more than `drop` from its best checkpoint to the
    end: DPO pushed past its best (the degenerate text of over-optimization)."""
    out = []
    for seed in SEEDS:
        points = results["dpo"][seed]["SFT then DPO"]["checkpoints"]
        best = max(points, key=lambda c: c["rubric"])
        if points[-1]["rubric"] < best["rubric"] - drop:
            out.append({"seed": seed, "best": best, "end": points[-1]})
    return out


def runs_table(results: dict) -> str:
    """The runs' end measures; the base model (one model, whatever the seed) has no DPO
    measures, only its replies and its log-probabilities of the held-out pairs."""
    rows = []
    table = run_rows(results)
    base = table.pop("base model")
    rows.append(["base model", f"{base['rubric'][0]:.2f}", f"{base['faithful'][0]:.2f}", "",
                 "", "", f"{base['logp_chosen'][0]:.1f}",
                 f"{base['logp_rejected'][0]:.1f}"])  # fmt: skip
    for run, m in table.items():
        rows.append([run] + [f"{m[k][0]:.2f} ± {m[k][1]:.2f}" for k in MEASURES[:5]]
                    + [f"{m[k][0]:.1f} ± {m[k][1]:.1f}" for k in MEASURES[5:]])  # fmt: skip
    return markdown_table(
        ["run", "rubric", "faithful", "accuracy", "margin", "KL", "log p chosen",
         "log p rejected"], rows, ["---"] + ["---:"] * 7)  # fmt: skip


def grpo_table(results: dict) -> str:
    rows = []
    for r in RANKS:
        g = results["grpo"][r]
        rewards = g["rewards"]
        rows.append([r, f"{g['trainable']:,}", f"{g['before']['reward']:.2f}",
                     f"{g['after']['reward']:.2f}", f"{statistics.mean(rewards[:4]):.2f}",
                     f"{statistics.mean(rewards[-4:]):.2f}"])  # fmt: skip
    return markdown_table(
        ["rank", "trainable", "reward before", "reward after", "samples, first 4 steps",
         "samples, last 4 steps"], rows, ["---:"] * 6)  # fmt: skip


def memory_table(results: dict) -> str:
    m = results["memory"]
    toy, big = m["toy"], m["7b"]
    rows = [
        ["embedded model, LoRA, fp32: estimate", f"{toy['separate']:,}", f"{toy['adapter-off']:,}",
         f"{toy['separate'] - toy['adapter-off']:,}"],
        ["embedded model: bytes a copy holds", f"{m['held']['separate copy']:,}",
         f"{m['held']['LoRA adapter off']:,}", f"{m['held']['separate copy']:,}"],
        ["Llama-2-7B, LoRA, 16-bit base (GB)", f"{big['separate'] / GB:.1f}",
         f"{big['adapter-off'] / GB:.1f}", f"{(big['separate'] - big['adapter-off']) / GB:.1f}"],
    ]  # fmt: skip
    return markdown_table(["", "separate reference", "adapter off", "saved"], rows,
                          ["---", "---:", "---:", "---:"])  # fmt: skip


def pairs_table(results: dict) -> str:
    rows = [[e["flaw"], e["complaint"], e["chosen"], e["rejected"]] for e in results["examples"]]
    return markdown_table(["flaw", "complaint", "chosen", "rejected"], rows)


def dpo_figure(results: dict) -> Figure:
    """Along DPO (seed 0): the held-out pairs' mean log-probabilities of chosen and rejected
    (the same pairs at every step), and the held-out rubric at the checkpoints, for DPO after
    SFT and DPO alone."""
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    for run, style in (("SFT then DPO", "-"), ("DPO only", "--")):
        data = results["dpo"][SEEDS[0]][run]
        steps = [t["step"] for t in data["heldout"]]
        left.plot(steps, [t["logp_chosen"] for t in data["heldout"]], style, color="tab:green",
                  label=f"{run}: chosen")  # fmt: skip
        left.plot(steps, [t["logp_rejected"] for t in data["heldout"]], style, color="tab:red",
                  label=f"{run}: rejected")  # fmt: skip
        points = data["checkpoints"]
        right.plot([c["step"] for c in points], [c["rubric"] for c in points], style + "o",
                   label=run)  # fmt: skip
    left.set_xlabel("DPO step")
    left.set_ylabel("log p(reply), held-out pairs")
    left.legend(fontsize=7)
    right.set_xlabel("DPO step")
    right.set_ylabel("held-out rubric")
    right.set_ylim(-0.05, 1.05)
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def grpo_figure(results: dict) -> Figure:
    """Mean reward of each step's samples, per LoRA rank (a moving mean of 4 steps)."""
    fig = Figure(figsize=(5, 3.2))
    ax = fig.add_subplot()
    for r in RANKS:
        rewards = results["grpo"][r]["rewards"]
        smooth = [statistics.mean(rewards[max(0, i - 3) : i + 1]) for i in range(len(rewards))]
        ax.plot(range(1, len(rewards) + 1), smooth, label=f"rank {r}")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(f"mean reward of samples (max {grpo.MAX_REWARD:.0f})")
    ax.legend()
    fig.tight_layout()
    return fig


def example_marks(marks: dict) -> str:
    """The rubric's four checks on a reply, its faithfulness and its reward, in words."""
    checks = ", ".join(f"{c} {'yes' if marks[c] else 'no'}" for c in rubric.CRITERIA)
    faithful = "yes" if marks["faithful"] else "no"
    return (f"{checks}: rubric {marks['score']:.2f}, faithful {faithful}, "
            f"reward {marks['reward']:.2f} of {grpo.MAX_REWARD:.0f}")  # fmt: skip
