"""DPO with LoRA on the real model (SmolLM2-135M-Instruct, `peftlab models fetch smollm2`)
beside the embedded toy: lesson 12's "DPO only" run, one seed, at the lesson's budget (64
pairs, 12 steps of 4 pairs, beta 0.1). The reference is the policy with its adapter switched
off, as TRL does for a peft model given no `ref_model`.

    .venv/bin/python benchmarks/preferences.py [--models embedded smollm2] [--lr 5e-3 5e-3]

Per model: the rubric, faithful share and reward (`grpo.reward`, of 2) of greedy replies to
lesson 12's 20 held-out complaints before and after DPO; reward accuracy, margin and KL to the
reference on its 16 held-out pairs; seconds per DPO step; the process's peak memory; and the
bytes a separate reference copy would add (`preferences.reference_bytes`). Everything in fp32:
one `torch.autocast` block around the whole loop would keep the bf16 copy of every LoRA weight
cast at step 1 (B = 0) for the block's life, so the policy would never leave its reference (the
demo's Trainer enters autocast once per step). Each run in a fresh process, one at a time.
"""

import peftlab  # noqa: F401  first: it mutes bitsandbytes' 'pip install kernels' log line

# isort: split
import argparse
import json
import resource
import subprocess
import sys
import time


def child(setting: dict) -> dict:
    import torch

    from peftlab import base_model, preferences
    from peftlab.lessons.lesson12_preferences import BUDGET, _Judge, _policy
    from peftlab.seed import seed_everything

    name = setting["model"]
    seed_everything(0)
    model, tokenizer = base_model.load(name)
    policy = _policy(model, BUDGET)
    judge = _Judge(tokenizer, BUDGET)
    before = judge(policy)  # a fresh adapter is the base model (B = 0)
    start = time.perf_counter()
    fit = preferences.train_dpo(
        policy, tokenizer, preferences.pairs(BUDGET.n_pairs), steps=BUDGET.dpo_steps,
        batch_size=BUDGET.dpo_batch, learning_rate=setting["lr"], seed=0, beta=BUDGET.beta,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    after = judge(policy)
    held = preferences.reference_bytes(model)
    keep = ("rubric", "faithful", "reward", "accuracy", "margin", "kl")
    return {
        "model": name,
        "lr": setting["lr"],
        "before": {k: before[k] for k in keep},
        "after": {k: after[k] for k in keep},
        "train_accuracy_last": fit.measured[-1]["accuracy"],
        "step_seconds": seconds / BUDGET.dpo_steps,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reference_mb": held,
        "threads": torch.get_num_threads(),
    }


def run_child(setting: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(setting)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"{setting}: the run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    from peftlab.tables import markdown_table

    body = []
    for r in rows:
        b, a = r["before"], r["after"]
        body.append([
            r["model"], f"{r['lr']:g}",
            f"{b['rubric']:.2f} -> {a['rubric']:.2f}",
            f"{b['faithful']:.0%} -> {a['faithful']:.0%}",
            f"{b['reward']:.2f} -> {a['reward']:.2f}",
            f"{b['accuracy']:.2f} -> {a['accuracy']:.2f}",
            f"{a['margin']:+.2f}", f"{a['kl']:.3f}",
            f"{r['step_seconds']:.2f}", f"{r['peak_mb']:,.0f}",
        ])  # fmt: skip
    headers = ["model", "lr", "rubric", "faithful", "reward (of 2)",
               "held-out pair accuracy", "margin after", "KL after", "s / DPO step",
               "peak MB"]  # fmt: skip
    return markdown_table(headers, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["embedded", "smollm2"])
    parser.add_argument("--lr", nargs="+", type=float, default=[5e-3, 5e-3],
                        help="one per model (default: the lesson's)")  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if len(args.lr) != len(args.models):
        parser.error(f"--lr: give one learning rate per model ({len(args.models)})")
    from peftlab.measure import provenance

    rows = [run_child({"model": m, "lr": lr})
            for m, lr in zip(args.models, args.lr, strict=True)]  # fmt: skip
    print(f"DPO only with LoRA r 8 on every linear layer, the reference = the adapter off; fp32; "
          f"{provenance()}; each run {rows[0]['threads']} thread(s)\n")  # fmt: skip
    print(table(rows))
    print()
    for r in rows:
        copy = r["reference_mb"]["separate copy"] / 1e6
        print(
            f"{r['model']}: a separate reference copy would hold {copy:,.1f} MB more; "
            "the adapter switched off holds nothing"
        )


if __name__ == "__main__":
    main()
