"""Load the base model (the embedded one, or any causal LM), and build the embedded one.

`load()` is the one entry point the demo, notebooks and tests use. With no model name it loads
the tiny Llama shipped in `peftlab/assets/base-model` ("embedded"); `PEFT_LAB_MODEL` (or a
`model_name` argument) swaps in the real SmolLM2-135M-Instruct once fetched ("smollm2",
`peftlab.models`), a local folder or a hub id, with the same code. `build_embedded()` trains
that tiny Llama from nothing, seeded, on the corpus that `support_data` generates.
"""

import json
import math
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers import models as tokenizer_models
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from peftlab import models, support_data
from peftlab.atomic import atomic_dir
from peftlab.schedule import warmup_cosine
from peftlab.seed import num_threads, seed_everything

_print_now = partial(print, flush=True)
EMBEDDED_PATH = Path(__file__).parent / "assets" / "base-model"
EMBEDDED_NAME = "peftlab-base"
MODEL_ENV = "PEFT_LAB_MODEL"

END_OF_TEXT, IM_START, IM_END, PAD = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


EMBEDDED_ALIASES = ("embedded", EMBEDDED_NAME)


def canonical_name(model_name: str | None = None) -> str:
    """The model to use: the argument, else $PEFT_LAB_MODEL, else the embedded model. The toy
    is called "embedded" (or "peftlab-base", its old name); a fetched real model by its name
    ("smollm2"); anything else is a local folder or a hub id."""
    name = model_name or os.environ.get(MODEL_ENV) or EMBEDDED_NAME
    return EMBEDDED_NAME if name in EMBEDDED_ALIASES else name


def is_embedded(model_name: str | None = None) -> bool:
    """Whether the model name (or its default) is the embedded toy."""
    return canonical_name(model_name) == EMBEDDED_NAME


def resolve(model_name: str | None = None) -> str:
    """A path or hub id that `from_pretrained` accepts: the embedded model's folder, a fetched
    model's verified folder (ValueError saying how to fetch it when it is missing or damaged),
    or the name itself."""
    name = canonical_name(model_name)
    if name == EMBEDDED_NAME:
        return str(EMBEDDED_PATH)
    if name in models.FETCHABLE:
        return str(models.require(name))
    return name


def nf4_config(double_quant: bool = True):
    """QLoRA's storage format: NF4 weights in blocks of 64, (double-quantized) constants, bf16
    compute. The one place the project spells it out."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load(
    model_name: str | None = None,
    *,
    quantization_config=None,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
) -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    """Load (model, tokenizer) on `device`; the tokenizer pads on the left, ready for batched
    generation."""
    path = resolve(model_name)
    kwargs = {"dtype": dtype}
    if quantization_config is not None:
        kwargs.update(quantization_config=quantization_config, device_map=device)
    elif device != "cpu":
        kwargs.update(device_map=device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = (
            f"it is not a local folder and HF_HUB_OFFLINE=1, so the hub is not asked; "
            f"set {MODEL_ENV} (or --model) to a local folder, or unset HF_HUB_OFFLINE"
            if offline
            else f"check the name in {MODEL_ENV} (or --model)"
        )
        raise ValueError(f"cannot load model {path!r}: {hint}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    model.eval()
    return model, tokenizer


# --- building the embedded model ------------------------------------------------------------
def _chat_text(complaint: str, reply: str) -> str:
    return (
        f"{IM_START}user\n{support_data.format_prompt(complaint)}{IM_END}\n"
        f"{IM_START}assistant\n{reply}{IM_END}\n"
    )


def corpus_texts(docs: list[support_data.CorpusDoc]) -> list[str]:
    """Pretraining documents as raw text, chats already in the chat template's format."""
    return [
        doc.text + END_OF_TEXT if doc.text is not None else _chat_text(*doc.chat) for doc in docs
    ]


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (as GPT-2 and Llama 3 use) with a ChatML chat template."""
    tok = Tokenizer(tokenizer_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT, IM_START, IM_END, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=END_OF_TEXT,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=None,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def model_config(
    tokenizer: PreTrainedTokenizerFast, hidden: int = 192, layers: int = 4
) -> LlamaConfig:
    """A tiny Llama: the same blocks as Llama 2/3 (RMSNorm, RoPE, SwiGLU), a few million weights.

    Widths are multiples of 64 (bitsandbytes' 4-bit CPU kernels quantize whole 64-value blocks
    per row), so the same model also loads in NF4 for QLoRA.
    """
    if hidden % 64:
        raise ValueError(f"hidden={hidden}: use a multiple of 64 so the model loads in 4-bit")
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 64 * 64 or 64,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 32,
        num_key_value_heads=hidden // 32,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _blocks(tokenizer, texts: list[str], seq_len: int) -> torch.Tensor:
    ids = [i for enc in tokenizer(texts, add_special_tokens=False)["input_ids"] for i in enc]
    n = len(ids) // (seq_len + 1)
    return torch.tensor(ids[: n * (seq_len + 1)]).view(n, seq_len + 1)


@torch.no_grad()
def perplexity(model, blocks: torch.Tensor, batch_size: int = 64) -> float:
    """exp(mean next-token loss) over token blocks of shape (n, seq_len + 1)."""
    model.eval()
    losses = [
        model(input_ids=b[:, :-1], labels=b[:, :-1].clone()).loss.item() * len(b)
        for b in blocks.split(batch_size)
    ]
    return math.exp(sum(losses) / len(blocks))


def write_chat_template_into_config(folder: str | os.PathLike) -> None:
    """Also keep the chat template in tokenizer_config.json, where older loaders look for it."""
    path = Path(folder) / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    path.write_text(json.dumps(config, indent=2) + "\n")


def corpus_and_tokenizer(
    seed: int = 0, n_docs: int = 150_000, vocab_size: int = 2048
) -> tuple[list[str], list[str], PreTrainedTokenizerFast]:
    """The recipe's training texts, held-out texts and tokenizer. No floating point is involved
    (generated text, BPE merge counts), so these come out the same on every machine."""
    texts = corpus_texts(support_data.base_corpus(n_docs=n_docs, seed=seed))
    n_val = max(len(texts) // 50, 1)
    return texts[n_val:], texts[:n_val], train_tokenizer(texts[n_val:], vocab_size)


def save_tokenizer(tokenizer, config, folder: str | os.PathLike) -> None:
    """The tokenizer files as the embedded model ships them (context length, chat template)."""
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(folder)
    write_chat_template_into_config(folder)


def build_embedded(
    out: str | os.PathLike = EMBEDDED_PATH,
    *,
    seed: int = 0,
    steps: int = 3600,
    n_docs: int = 150_000,
    vocab_size: int = 2048,
    hidden: int = 192,
    layers: int = 4,
    seq_len: int = 128,
    batch_size: int = 32,
    lr: float = 3e-3,
    threads: int = 2,
    log: Callable[[str], None] = _print_now,
) -> dict:
    """Train the embedded base model from nothing and save it in Hugging Face format.

    Same seed, same files on the same kind of CPU: one thread by default, because the order of
    floating-point sums (and so the last bits of every weight) depends on the thread count. On
    another instruction set (AVX2, AVX-512, AMX) the fp32 kernels round differently and the
    weights come out different, though as good: the tokenizer and config files are the same
    everywhere (`corpus_and_tokenizer`). Returns the held-out perplexity and timing.
    """
    if steps <= 0:
        raise ValueError(f"steps={steps}: the number of training steps must be positive")
    seed_everything(seed)
    with num_threads(threads):  # the caller's count comes back after
        start = time.perf_counter()
        train_texts, val_texts, tokenizer = corpus_and_tokenizer(seed, n_docs, vocab_size)
        train_blocks = _blocks(tokenizer, train_texts, seq_len)
        val_blocks = _blocks(tokenizer, val_texts, seq_len)
        log(f"corpus: {len(train_texts) + len(val_texts)} documents, {train_blocks.numel():,} "
            "training tokens")  # fmt: skip

        config = model_config(tokenizer, hidden=hidden, layers=layers)
        model = LlamaForCausalLM(config)
        log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95)
        )
        warmup = max(steps // 20, 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(  # warm-up, then cosine down to a tenth
            optimizer,
            lambda step: warmup_cosine(step, steps, warmup, floor=0.1, warmup_from_zero=False),
        )
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for step in range(steps):
            idx = torch.randint(len(train_blocks), (batch_size,), generator=generator)
            batch = train_blocks[idx]
            loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1].clone()).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if step % 100 == 0 or step == steps - 1:
                log(f"step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - start:6.0f} s")

        ppl = perplexity(model, val_blocks)
        log(f"held-out perplexity: {ppl:.2f}")
        model.generation_config = GenerationConfig(
            eos_token_id=[tokenizer.eos_token_id, tokenizer.bos_token_id],
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            do_sample=False,
            max_new_tokens=64,
        )
        with atomic_dir(out) as tmp:
            model.save_pretrained(tmp)
            save_tokenizer(tokenizer, config, tmp)
        seconds = time.perf_counter() - start
        log(f"saved to {out} in {seconds:.0f} s")
        return {"perplexity": ppl, "seconds": seconds, "parameters": model.num_parameters()}
