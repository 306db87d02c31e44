"""The PEFT family side by side: every method through peft itself, on one task, one budget.

Each method is a peft config (or, for full fine-tuning, no config at all) wrapped around a fresh
copy of the base model and trained by the same loop: the same fine-tune examples in the same
order, the same steps and batch, AdamW with the same warm-up/cosine schedule. Only the learning
rate differs, and it is chosen per method from a small grid by the loss on a validation split of
the fine-tune set (`split`), never by the held-out complaints the methods are scored on.

`compare_family` runs the protocol and returns one `MethodResult` per method: trainable
parameters (peft's own count), adapter bytes on disk, final train and validation loss, held-out
rubric score per seed, measured training memory, seconds per step, and, where the method merges
into the base, whether the merged model answers exactly as the unmerged one.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from peftlab import base_model, finetune, measure, support_data
from peftlab.generate import generate
from peftlab.quiet import known_warnings, muted
from peftlab.rubric import mean_score
from peftlab.schedule import warmup_cosine
from peftlab.seed import seed_everything

TARGETS = "all-linear"  # the course's choice for the embedded model (compare.demo_targets)
RANK = 8
VIRTUAL_TOKENS = 8
VERA_RANK = 64  # VeRA trains only scaling vectors over frozen random matrices: it needs a wider r
LORAPLUS_RATIO = 16  # learning rate of B over A (the LoRA+ paper's default)


@dataclass(frozen=True)
class Method:
    """One member of the family: how peft builds it and what the lesson says about it."""

    name: str
    family: str  # "reparametrized" (a weight update), "additive" (new tokens), "scaling", "full"
    base_lr: float  # the middle of its learning-rate grid
    merges: bool  # whether peft can fold it into the base weights (merge_and_unload)
    config: Callable[[int], object] | None  # steps -> peft config; None for full fine-tuning
    loraplus: bool = False


def _lora(**extra) -> Callable[[int], object]:
    def build(steps: int):
        from peft import LoraConfig

        return LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS,
                          task_type="CAUSAL_LM", **extra)  # fmt: skip

    return build


def _adalora(steps: int):
    from peft import AdaLoraConfig

    # the three phases: warm-up at init_r, budget pruning down to target_r, a final phase
    return AdaLoraConfig(
        init_r=RANK + RANK // 2, target_r=RANK, lora_alpha=2 * RANK, target_modules=TARGETS,
        total_step=steps, tinit=max(1, steps // 10), tfinal=max(1, steps // 5),
        deltaT=max(1, steps // 20), task_type="CAUSAL_LM",
    )  # fmt: skip


def _ia3(steps: int):
    from peft import IA3Config

    return IA3Config(task_type="CAUSAL_LM")  # peft's default for Llama: k, v and down_proj


def _prefix(steps: int):
    from peft import PrefixTuningConfig

    return PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS)


def _prompt(steps: int):
    from peft import PromptTuningConfig

    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS)


def _ptuning(steps: int):
    from peft import PromptEncoderConfig

    return PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=VIRTUAL_TOKENS,
                               encoder_hidden_size=64)  # fmt: skip


def _loha(steps: int):
    from peft import LoHaConfig

    return LoHaConfig(r=RANK, alpha=2 * RANK, target_modules=TARGETS, task_type="CAUSAL_LM")


def _lokr(steps: int):
    from peft import LoKrConfig

    return LoKrConfig(r=RANK, alpha=2 * RANK, target_modules=TARGETS, task_type="CAUSAL_LM")


def _vera(steps: int):
    from peft import VeraConfig

    return VeraConfig(r=VERA_RANK, target_modules=TARGETS, task_type="CAUSAL_LM")


def _ln_tuning(steps: int):
    from peft import LNTuningConfig

    return LNTuningConfig(task_type="CAUSAL_LM")


def _oft(steps: int):
    from peft import OFTConfig

    return OFTConfig(r=0, oft_block_size=32, target_modules=TARGETS, task_type="CAUSAL_LM")


def _hra(steps: int):
    from peft import HRAConfig

    return HRAConfig(r=RANK, target_modules=TARGETS, task_type="CAUSAL_LM")


def _fourierft(steps: int):
    from peft import FourierFTConfig

    return FourierFTConfig(n_frequency=512, scaling=100.0, target_modules=TARGETS,
                           task_type="CAUSAL_LM")  # fmt: skip


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("LoRA", "reparametrized", 1e-2, True, _lora()),
        Method("rsLoRA", "reparametrized", 1e-2, True, _lora(use_rslora=True)),
        Method("DoRA", "reparametrized", 1e-2, True, _lora(use_dora=True)),
        Method("PiSSA", "reparametrized", 1e-2, True, _lora(init_lora_weights="pissa")),
        Method("LoRA+", "reparametrized", 1e-3, True, _lora(), loraplus=True),
        Method("AdaLoRA", "reparametrized", 3e-2, True, _adalora),
        Method("LoHa", "reparametrized", 3e-2, True, _loha),
        Method("LoKr", "reparametrized", 3e-2, True, _lokr),
        Method("VeRA", "reparametrized", 1e-1, True, _vera),
        Method("IA3", "scaling", 1e-1, True, _ia3),
        Method("prefix tuning", "additive", 1e-1, False, _prefix),
        Method("prompt tuning", "additive", 3e-1, False, _prompt),
        Method("full fine-tuning", "full", 3e-3, False, None),
        # more of what peft 0.21 ships, in the benchmark's full grid
        Method("P-tuning", "additive", 1e-1, False, _ptuning),
        Method("LN tuning", "scaling", 1e-1, True, _ln_tuning),
        Method("OFT", "reparametrized", 1e-2, True, _oft),
        Method("HRA", "reparametrized", 3e-3, True, _hra),
        Method("FourierFT", "reparametrized", 1e-2, True, _fourierft),
    )
}
CORE = tuple(list(METHODS)[:13])  # the methods the lesson must show
REFERENCE = "LoRA"


@dataclass(frozen=True)
class Protocol:
    """The budget every method gets: the same data, steps, batch and seeds; an lr grid around
    each method's `base_lr` (`lr_factors`); `n_val` fine-tune examples held back for choosing
    the rate; `n_heldout` held-out complaints to score; replies of up to `max_new_tokens`."""

    steps: int = 24
    batch_size: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    lr_factors: tuple[float, ...] = (1.0, 3.0)
    n_train: int = 400
    n_val: int = 40
    n_heldout: int = 16
    max_new_tokens: int = 48
    timing_repeats: int = 5

    def __post_init__(self):
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError(
                f"steps={self.steps}, batch_size={self.batch_size}: both must be positive"
            )
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds}: give at least one seed, each once")
        if not self.lr_factors or any(f <= 0 for f in self.lr_factors):
            raise ValueError(f"lr_factors={self.lr_factors}: give positive grid factors")
        if not 0 < self.n_val < self.n_train:
            raise ValueError(f"n_val={self.n_val}: hold back between 1 and n_train-1 examples")
        if self.n_heldout <= 0:
            raise ValueError(f"n_heldout={self.n_heldout}: score at least one complaint")

    def lr_grid(self, method: Method) -> list[float]:
        return [method.base_lr * f for f in self.lr_factors]


def split(protocol: Protocol) -> tuple[list, list]:
    """(train, validation): every k-th fine-tune example held back for choosing the lr."""
    examples = support_data.finetune_set(protocol.n_train)
    every = protocol.n_train // protocol.n_val
    val = [ex for i, ex in enumerate(examples) if i % every == every - 1][: protocol.n_val]
    held = {id(ex) for ex in val}
    return [ex for ex in examples if id(ex) not in held], val


_TOKENIZED: dict[tuple, tuple] = {}


def tokenized(protocol: Protocol, name: str | None, tokenizer) -> tuple:
    """(train, validation) token ids, tokenized once per protocol and model name."""
    key = (protocol.n_train, protocol.n_val, base_model.model_name(name))
    if key not in _TOKENIZED:
        _TOKENIZED[key] = tuple(
            tuple(finetune.tokenize_example(tokenizer, ex) for ex in part)
            for part in split(protocol)
        )
    return _TOKENIZED[key]


def heldout(protocol: Protocol) -> list[str]:
    """The complaints every method is scored on (unseen products, problems, phrasings)."""
    return support_data.heldout_complaints(protocol.n_heldout)


def check_methods(names: Sequence[str]) -> list[Method]:
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}: choose from {', '.join(METHODS)}")
    return [METHODS[n] for n in names]


# --- one model ---------------------------------------------------------------------------------
def build(method: Method, model, steps: int):
    """`model` wrapped for `method` (peft's get_peft_model), or itself for full fine-tuning."""
    if method.config is None:
        model.requires_grad_(True)
        return model
    from peft import get_peft_model

    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. AdaLoRA/VeRA notes on init
        return get_peft_model(model, method.config(steps))


def trainable_params(model) -> int:
    """Parameters the optimizer updates (tied weights counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def optimizer(method: Method, model, lr: float) -> torch.optim.Optimizer:
    """AdamW on the trainable parameters; LoRA+ through peft's create_loraplus_optimizer."""
    if method.loraplus:
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(
            model, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=LORAPLUS_RATIO, weight_decay=0.0
        )
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                             weight_decay=0.0)  # fmt: skip


def batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Example indices for each step: shuffled epochs, the same for every method of a seed."""
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += torch.randperm(n, generator=gen).tolist()
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


@dataclass
class Run:
    """One method trained at one learning rate and seed."""

    method: str
    lr: float
    seed: int
    model: object
    optimizer: object
    losses: list[float]
    val_loss: float
    trainable_params: int
    train_seconds: float
    held: dict = field(default_factory=dict)

    @property
    def train_loss(self) -> float:
        """Mean batch loss over the last tenth of the steps (at least one)."""
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return sum(tail) / len(tail)


@torch.no_grad()
def loss_on(model, data: Sequence[dict], pad_id: int, batch_size: int = 20) -> float:
    """Mean loss per reply token over `data` (tokenized examples)."""
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(data), batch_size):
        batch = finetune.pad_batch(list(data[i : i + batch_size]), pad_id)
        n = int((batch["labels"] != finetune.IGNORE_INDEX).sum())
        total += float(model(**batch).loss) * n
        tokens += n
    return total / tokens


def train(
    method: Method,
    lr: float,
    seed: int,
    protocol: Protocol,
    name: str | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> Run:
    """Fine-tune a fresh base model with `method` under `protocol`; validation loss at the end."""
    if lr <= 0:
        raise ValueError(f"lr={lr}: the learning rate must be positive")
    with muted():
        model, tokenizer = base_model.load(name)
    data, val = tokenized(protocol, name, tokenizer)
    seed_everything(seed)  # the adapter's random init
    model = build(method, model, protocol.steps)
    opt = optimizer(method, model, lr)
    base_lrs = [g["lr"] for g in opt.param_groups]
    warmup = max(1, protocol.steps // 10)
    losses: list[float] = []
    held: dict = {}
    with known_warnings():  # e.g. prefix tuning's past_key_values (quiet.KNOWN_WARNINGS)
        model.train()
        start = time.perf_counter()
        for step, rows in enumerate(batches(len(data), protocol.batch_size, protocol.steps, seed)):
            factor = warmup_cosine(step, protocol.steps, warmup)
            for group, base_lr in zip(opt.param_groups, base_lrs, strict=True):
                group["lr"] = base_lr * factor
            loss = model(**finetune.pad_batch([data[i] for i in rows], tokenizer.pad_token_id)).loss
            loss.backward()
            opt.step()
            if method.name == "AdaLoRA":  # its rank budget is re-allocated between steps
                model.base_model.update_and_allocate(step)
            if step == protocol.steps - 1:
                held = measure.held_bytes(model, opt)  # gradients and states all exist now
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            if on_step is not None:
                on_step(step, losses[-1])
        seconds = time.perf_counter() - start
        val_loss = loss_on(model, val, tokenizer.pad_token_id)
    model.tokenizer = tokenizer
    return Run(method.name, lr, seed, model, opt, losses, val_loss, trainable_params(model),
               seconds, held)  # fmt: skip


def replies(run: Run, complaints: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy replies of the trained model (`generate` decodes a prefix-tuned one through its
    prefix)."""
    run.model.eval()
    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return generate(run.model, run.model.tokenizer, complaints,
                        max_new_tokens=max_new_tokens)  # fmt: skip


def merged_replies(run: Run, complaints: Sequence[str], max_new_tokens: int) -> list[str]:
    """Greedy replies of a copy of the model with the adapter folded into the base."""
    merged = copy.deepcopy(run.model).merge_and_unload()
    merged.eval()
    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return generate(merged, run.model.tokenizer, complaints,
                        max_new_tokens=max_new_tokens)  # fmt: skip


def disk_bytes(run: Run, folder: Path) -> int:
    """Bytes of the weight files `save_pretrained` writes: the adapter, or the whole model."""
    with known_warnings(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        run.model.save_pretrained(folder)
    return measure.weights_bytes(folder)


def activation_bytes(run: Run, protocol: Protocol, seq_len: int = 64) -> int:
    """Bytes autograd saves for backward on one batch of `seq_len`-token rows (counted)."""
    with known_warnings():
        return measure.saved_activation_bytes(run.model, protocol.batch_size, seq_len)["total"]


def step_seconds(
    runs: dict[str, Run], protocol: Protocol, name: str | None = None
) -> dict[str, float]:
    """Median seconds of one training step per method, timed round-robin in one run
    (`measure.median_ms`), on the same batch, so load on the machine hits all methods alike."""
    first = next(iter(runs.values()))
    tokenizer = first.model.tokenizer
    train_set, _ = split(protocol)
    rows = [finetune.tokenize_example(tokenizer, ex) for ex in train_set[: protocol.batch_size]]
    batch = finetune.pad_batch(rows, tokenizer.pad_token_id)

    def step(run: Run) -> Callable[[], None]:
        def go() -> None:
            run.model.train()
            run.model(**batch).loss.backward()
            run.optimizer.step()
            run.optimizer.zero_grad(set_to_none=True)

        return go

    with known_warnings():
        ms = measure.median_ms({m: step(r) for m, r in runs.items()}, protocol.timing_repeats, 1)
    return {m: v / 1e3 for m, v in ms.items()}


# --- the whole family ----------------------------------------------------------------------------
@dataclass
class MethodResult:
    """What one method bought and cost under the protocol."""

    method: str
    family: str
    lr: float
    lr_val_losses: dict[float, float]
    trainable_params: int
    peft_trainable_params: int | None
    disk_bytes: int
    train_loss: list[float]
    val_loss: list[float]
    scores: list[float]
    held_bytes: int
    activation_bytes: int
    seconds_per_step: float = math.nan
    merges: bool = False
    merge_identical: bool | None = None
    example_reply: str = ""

    @property
    def memory_bytes(self) -> int:
        return self.held_bytes + self.activation_bytes

    @property
    def score(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def score_spread(self) -> float:
        """Population standard deviation of the per-seed scores."""
        return statistics.pstdev(self.scores)


@dataclass
class Unsupported:
    method: str
    error: str


def _finite(loss: float) -> float:
    """A diverged run (nan or inf loss) is never the best."""
    return loss if math.isfinite(loss) else math.inf


def peft_trainable(model) -> int | None:
    """peft's own count (`get_nb_trainable_parameters`), None for a plain model."""
    get = getattr(model, "get_nb_trainable_parameters", None)
    return None if get is None else int(get()[0])


def evaluate_method(
    method: Method,
    protocol: Protocol,
    name: str | None,
    scratch: str | Path | None,
    say: Callable[[str], None],
) -> MethodResult | Unsupported:
    """One method under the protocol: its lr picked on the validation split (first seed), the
    other seeds trained at that lr, every seed scored on the held-out complaints; bytes on disk,
    training memory and merge identity measured. peft's error if it cannot build or train it."""
    complaints = heldout(protocol)
    try:
        grid = {}
        for lr in protocol.lr_grid(method):
            run = train(method, lr, protocol.seeds[0], protocol, name)
            grid[lr] = run
            say(f"{method.name} lr={lr:g}: val loss {run.val_loss:.3f}")
        best_lr = min(grid, key=lambda lr: _finite(grid[lr].val_loss))
        runs = [grid[best_lr]] + [
            train(method, best_lr, seed, protocol, name) for seed in protocol.seeds[1:]
        ]
    except Exception as err:  # peft refuses this method on this model: record why
        say(f"{method.name}: {type(err).__name__}: {err}")
        return Unsupported(method.name, f"{type(err).__name__}: {err}")
    first = runs[0]
    answers = [replies(r, complaints, protocol.max_new_tokens) for r in runs]
    identical = None
    if method.merges:
        identical = merged_replies(first, complaints, protocol.max_new_tokens) == answers[0]
    size = 0
    if scratch is not None:
        size = disk_bytes(first, Path(scratch) / method.name.replace(" ", "-"))
    result = MethodResult(
        method=method.name, family=method.family, lr=best_lr,
        lr_val_losses={lr: r.val_loss for lr, r in grid.items()},
        trainable_params=first.trainable_params,
        peft_trainable_params=peft_trainable(first.model),
        disk_bytes=size,
        train_loss=[r.train_loss for r in runs], val_loss=[r.val_loss for r in runs],
        scores=[mean_score(a, complaints) for a in answers],
        held_bytes=sum(first.held.values()),
        activation_bytes=activation_bytes(first, protocol),
        merges=method.merges, merge_identical=identical, example_reply=answers[0][0],
    )  # fmt: skip
    say(f"{method.name}: score {result.score:.2f} ± {result.score_spread:.2f}")
    return result


def untrained(method: Method, lr: float, protocol: Protocol, name: str | None = None) -> Run:
    """A freshly built model and its optimizer, as `train` starts them: what `step_seconds`
    times (a step costs the same whatever the weights hold)."""
    with muted():
        model, tokenizer = base_model.load(name)
    seed_everything(protocol.seeds[0])
    with known_warnings():
        model = build(method, model, protocol.steps)
    model.tokenizer = tokenizer
    return Run(method.name, lr, protocol.seeds[0], model, optimizer(method, model, lr), [],
               math.nan, trainable_params(model), 0.0, {})  # fmt: skip


def _send(stream, obj) -> None:
    import pickle

    data = pickle.dumps(obj)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def _receive(stream):
    import pickle

    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the other side closed the pipe")
    return pickle.loads(stream.read(int.from_bytes(head, "little")))


def _worker_main() -> None:
    """A worker process (`_Worker`): it reads the protocol, then one method name at a time, and
    answers each with (outcome, progress lines); it computes as the caller does (one torch
    thread, the caller's warning filters: under pytest, a FutureWarning is an error here too)."""
    import os
    import sys

    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the answers
    protocol, name, scratch, filters = _receive(sys.stdin.buffer)
    torch.set_num_threads(1)
    warnings.filters[:] = filters
    while (method_name := _receive(sys.stdin.buffer)) is not None:
        lines: list[str] = []
        outcome = evaluate_method(METHODS[method_name], protocol, name, scratch, lines.append)
        _send(answers, (outcome, lines))


def _evaluate_elsewhere(todo, protocol, name, scratch) -> dict[str, tuple[object, list[str]]]:
    """`evaluate_method` for methods taken from the queue `todo` until it is empty, in one fresh
    Python process (not multiprocessing, which would import the caller's script again)."""
    import queue
    import subprocess
    import sys
    import tempfile

    code = "from peftlab.peft_family import _worker_main; _worker_main()"
    log = tempfile.TemporaryFile()  # its stderr: a pipe nobody reads could fill and stall it
    worker = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=log)  # fmt: skip
    done = {}
    try:
        _send(worker.stdin, (protocol, name, scratch, list(warnings.filters)))
        while True:
            try:
                method_name = todo.get_nowait()
            except queue.Empty:
                break
            _send(worker.stdin, method_name)
            try:
                done[method_name] = _receive(worker.stdout)
            except EOFError:
                worker.kill()
                worker.wait()
                log.seek(0)
                error = log.read().decode(errors="replace")[-3000:]
                raise RuntimeError(f"{method_name}: the worker process failed:\n{error}") from None
        _send(worker.stdin, None)
        worker.stdin.close()
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
        log.close()
    return done


def compare_family(
    protocol: Protocol = Protocol(),
    methods: Sequence[str] = CORE,
    name: str | None = None,
    scratch: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int = 1,
) -> dict:
    """Run the protocol for each method (`evaluate_method`), then time one training step of
    each, round-robin in this process on a freshly built model, so that load on the machine
    hits all methods alike.

    `workers` > 1 evaluates that many methods at a time, each in its own process on one thread:
    every run seeds itself, so the results are the same as in one process, only sooner.
    Returns {"protocol", "results": [MethodResult], "unsupported": [Unsupported], "heldout"}.
    """
    chosen = check_methods(methods)
    if REFERENCE not in methods:
        raise ValueError(f"methods must include {REFERENCE!r}: the ratios are taken against it")
    if workers < 1:
        raise ValueError(f"workers={workers}: give at least one process")
    say = progress or (lambda _msg: None)
    if workers == 1:
        outcomes = [evaluate_method(m, protocol, name, scratch, say) for m in chosen]
    else:
        import queue
        from concurrent.futures import ThreadPoolExecutor

        names = [m.name for m in chosen]
        todo = queue.Queue()
        for n in names:
            todo.put(n)
        with ThreadPoolExecutor(workers) as pool:  # each thread feeds one worker process
            futures = [pool.submit(_evaluate_elsewhere, todo, protocol, name, scratch)
                       for _ in range(min(workers, len(names)))]  # fmt: skip
            by_name = {}
            for future in futures:
                by_name |= future.result()
        for n in names:
            for line in by_name[n][1]:
                say(line)
        by_name = {n: outcome for n, (outcome, _lines) in by_name.items()}
        outcomes = [by_name[n] for n in names]
    results = [o for o in outcomes if isinstance(o, MethodResult)]
    unsupported = [o for o in outcomes if isinstance(o, Unsupported)]
    fresh = {r.method: untrained(METHODS[r.method], r.lr, protocol, name) for r in results}
    seconds = step_seconds(fresh, protocol, name)
    for r in results:
        r.seconds_per_step = seconds[r.method]
    return {"protocol": protocol, "results": results, "unsupported": unsupported,
            "heldout": heldout(protocol)}  # fmt: skip
