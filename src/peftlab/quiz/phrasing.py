"""The ways people say things, as one table applied to answers and key points alike.

A grader that wants the bank's exact words fails answers a person would accept: "OOM" for "out
of memory", "sqrt(r)" for "square root of r", "3 epochs" for "three epochs", "16P/N" for
"divided by N", "an order of magnitude" for "10x". `rewrite` turns each such form into one
canonical wording before anything is matched, on both sides, so a key point written either way
accepts both, and no question needs a word list of its own. `SYNONYM_GROUPS` folds single words
after stemming; `NEGATIONS` are the words that turn a statement round ("doesn't" is rewritten
to "does not" first).
"""

from __future__ import annotations

import re

# Words that mean the same thing in this field. Each group maps to its first word.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("freeze", "frozen", "fixed", "locked", "untouched"),
    ("memory", "vram", "ram"),
    ("optimizer", "optimiser"),
    ("quantize", "quantise", "quantization", "quantisation"),
    ("gradient", "grad"),
    ("adapter", "adaptor"),
    ("matrix", "matrices"),
    ("merge", "fold", "fuse"),
    ("parameter", "param"),
    ("reduce", "cut", "shrink", "decrease", "drop", "save", "saving", "lower"),
    ("large", "big", "huge"),
    ("small", "tiny", "little"),
    ("expensive", "costly"),
    ("cheap", "inexpensive"),
    ("fast", "quick", "speedy"),
    ("mistake", "error"),
    ("initialize", "initialise", "init", "start"),
    ("zero", "0"),
    ("add", "plus", "sum"),
    ("subtract", "minus"),
    ("divide", "split", "shard", "partition"),
    ("replicate", "replica", "duplicate", "copy", "copies"),
    ("recompute", "recalculate", "rerun"),
    ("normal", "gaussian"),
    ("quantile", "percentile"),
    ("memorize", "memorise", "recite", "regurgitate", "parrot"),
    ("same", "identical", "equal", "unchanged"),
    ("latency", "overhead", "slowdown"),
    ("validation", "val", "dev"),
    ("evaluate", "eval"),
    ("perturb", "shift", "disturb"),
    ("behaviour", "behavior"),
    ("regularize", "regularise"),
    ("normalize", "normalise"),
    ("hallucinate", "hallucination", "invent", "confabulate"),
)

# Numbers said in words become digits ("three epochs" = "3 epochs"); "zero" stays a word,
# because it is also the name of DeepSpeed's ZeRO and the synonym table folds it anyway.
NUMBER_WORDS: dict[str, int] = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}

NEGATIONS = frozenset(
    "not no never without nothing none neither nor nobody nowhere cannot barely hardly".split()
)

# (pattern, replacement) on lowercased text, in order. Abbreviations are spelled out, so a key
# point needing "out of memory" accepts "OOM" and one needing "fsdp" accepts either spelling.
_REWRITES: tuple[tuple[str, str], ...] = (
    (r"[\u2018\u2019\u02bc`]", "'"),
    (r"\bcan'?t\b|\bcannot\b", "can not"),
    (r"\bwon'?t\b", "will not"),
    (r"\bshan'?t\b", "shall not"),
    (r"n't\b", " not"),
    (r"\bw/o\b", "without"),
    (r"\bw/(?=\s)", "with"),
    (r"\bb/c\b", "because"),
    (r"\b(?:e\.g|i\.e|etc)\.", " "),
    (r"\bvs\.?(?=\s)", "versus"),
    (r"\u03b1", " alpha "),
    (r"\u221a\s*\(?\s*(\w+)\s*\)?", r" square root of \1 "),
    (r"\bsqrt\s*\(?\s*(\w+)\s*\)?", r" square root of \1 "),
    (r"\broot[- ]r\b", "square root of r"),
    (r"[\u0394\u03b4]\s*w\b|\bdelta[- ]?w\b|\bdw\b", " update of w "),
    (r"\u2248|~=", " about "),
    (r"\u226a|<<", " much smaller than "),
    (r"\u226b|>>", " much larger than "),
    (r"\u00d7", " x "),
    (r"\u2212", "-"),
    # "16 B/param", "2 bytes/weight": bytes per something (a bare "7 B" stays billions).
    (r"(\d)\s*b(?=\s*(?:/|per\b)\s*(?:param|weight|token|element|value))", r"\1 bytes"),
    (r"\s*/\s*(param|weight|token|gpu|device|layer|step|block|element|value)", r" per \1"),
    (r"%", " percent "),
    (r"\+", " plus "),
    (r"(?<=\w)\s+-\s+(?=\w)|(?<=\))\s*-\s*(?=\w)", " minus "),
    (r"<-|:=", " becomes "),
    (r"\u2192|->|=>", " to "),
    (r"\u2264|<=", " at most "),
    (r"\u2265|>=", " at least "),
    # Division: "alpha/r", "16P/N", "32/64", "alpha/sqrt(r)" (not "q/k/v" words or "and/or").
    (r"(\d[a-z]?|\)|\balpha)\s*/\s*(?=\d|[a-z]\b|square root)", r"\1 divided by "),
    (r"\b(?:an|one) order of magnitude\b", " 10x "),
    (r"\btwo orders of magnitude\b", " 100x "),
    (r"\btenfold\b|\bten-fold\b", " 10x "),
    (r"\bout-of-memory\b|\boom\b|\bcuda oom\b", "out of memory"),
    (r"\bhf\b|\bhugging[- ]?face\b", "huggingface"),
    (r"\bfully sharded data[- ]parallel(?:ism)?\b", "fsdp"),
    (r"\bdistributed data[- ]parallel(?:ism)?\b", "ddp"),
    (r"\bzero[- ]?(?:stage[- ]?)?([123])\b|\bz([123])\b", r"zero\1\2"),
    (r"\bgqa\b", "grouped-query attention"),
    (r"\bgrouped query\b", "grouped-query"),
    (r"\bffn\b|\bfeed[- ]?forward\b", "mlp"),
    (r"\battn\b", "attention"),
    (r"\bkv\b|\bk/v\b", "key value"),
    (r"\blr\b", "learning rate"),
    (r"\bfull ft\b", "full fine-tuning"),
    (r"\bft\b", "fine-tuning"),
    (r"\bfine[- ]?tun", "fine-tun"),
    (r"\bbackprop(?:agation)?\b|\bbackward pass\b", "backward"),
    (r"\bfwd\b", "forward"),
    (r"\bbwd\b", "backward"),
    (r"\bckpt\b", "checkpoint"),
    (r"\bbfloat16\b|\bbf-16\b", "bf16"),
    (r"\bfloat16\b|\bhalf[- ]precision\b|\bfp-16\b", "fp16"),
    (r"\bfloat32\b|\bsingle[- ]precision\b|\bfp-32\b", "fp32"),
    (r"\bhold[- ]?out\b|\bheld[- ]?out\b", "held-out"),
    (r"\bseq(?:uence)?[- ]?len(?:gth)?\b|\bseqs?\b", "sequence length"),
    (r"\bmem\b", "memory"),
    (r"\bapprox\.?(?=\s)|\broughly\b|\baround\b", "about"),
    (r"\bw\b", "weight"),
    (r"\beos\b|\bend[- ]of[- ](?:turn|sequence)\b", "end-of-turn"),
)
_REWRITE = [(re.compile(p), r) for p, r in _REWRITES]
_NUMBER_WORD = re.compile(r"\b(" + "|".join(w for w in NUMBER_WORDS if w != "zero") + r")\b")


def rewrite(text: str) -> str:
    """`text` lowercased, with each way of saying a thing in `_REWRITES` put one way."""
    text = text.lower()
    for pattern, replacement in _REWRITE:
        text = pattern.sub(replacement, text)
    return _NUMBER_WORD.sub(lambda m: str(NUMBER_WORDS[m.group(1)]), text)
