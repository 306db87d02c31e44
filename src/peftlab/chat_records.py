"""Your own data as training chats: JSONL in TRL's two formats, checked line by line, and what
the model sees of each chat.

A data file has one JSON object per line, in either of the formats TRL and most tools read:

    {"prompt": "My order is late.", "completion": "Hi! Sorry about that..."}
    {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}

Each record becomes a chat (`Record`); `read_jsonl` checks a file line by line and names the
line of the first problem. The tokenizer's chat template turns a chat into text, and the labels
keep only the assistant's tokens (the reply and its end-of-turn token); everything else is
masked to -100, which the loss skips (`tokenize_messages`, `encode`). `own_data` trains on them.
"""

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from peftlab.tuning import IGNORE_INDEX

ROLES = ("system", "user", "assistant")
TRAIN_ON = ("reply", "all")


@dataclass(frozen=True)
class Record:
    """One training chat and the line of the file it came from."""

    messages: tuple[dict[str, str], ...]
    line: int = 0


def from_pair(prompt: str, completion: str, line: int = 0) -> Record:
    """A prompt/completion pair as a two-turn chat: the user's prompt, the assistant's reply."""
    return Record(
        ({"role": "user", "content": prompt}, {"role": "assistant", "content": completion}), line
    )


def _record(obj, where: str, line: int) -> Record:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: a {type(obj).__name__}, not a JSON object; {_FORMATS}")
    if "messages" in obj:
        messages = obj["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError(f'{where}: "messages" must be a non-empty list of {{role, content}}')
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise ValueError(f'{where}: messages[{i}] needs a "role" and a string "content"')
            if m.get("role") not in ROLES:
                raise ValueError(
                    f"{where}: unknown role {m.get('role')!r} in messages[{i}]; "
                    f"use one of {', '.join(ROLES)}"
                )
        replies = [m for m in messages if m["role"] == "assistant"]
        if not replies or not all(m["content"].strip() for m in replies):
            raise ValueError(
                f"{where}: empty completion: every record needs a non-empty assistant message "
                "(the reply the model learns)"
            )
        turns = tuple({"role": m["role"], "content": m["content"]} for m in messages)
        return Record(turns, line)
    if "prompt" in obj and "completion" in obj:
        prompt, completion = obj["prompt"], obj["completion"]
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise ValueError(f'{where}: "prompt" and "completion" must be strings')
        if not prompt.strip():
            raise ValueError(f"{where}: empty prompt; give the text the model answers")
        if not completion.strip():
            raise ValueError(f"{where}: empty completion; give the reply the model should learn")
        return from_pair(prompt, completion, line)
    raise ValueError(f"{where}: neither format (keys {sorted(obj)}); {_FORMATS}")


_FORMATS = (
    'write {"prompt": ..., "completion": ...} or {"messages": [{"role": ..., "content": ...}]}'
)


def read_jsonl(path: str | os.PathLike) -> list[Record]:
    """The records of a JSONL file; blank lines are skipped. A bad line raises ValueError
    naming the file and the line (malformed JSON, neither format, unknown role, empty reply)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file; give a JSONL file, one JSON object per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{where}: malformed JSON ({exc.msg} at column {exc.colno}); "
                "each line must be one JSON object"
            ) from exc
        records.append(_record(obj, where, number))
    if not records:
        raise ValueError(f"{path}:1: the file is empty; {_FORMATS}, one per line")
    return records


def tokenize_messages(
    tokenizer,
    messages: Sequence[dict[str, str]],
    *,
    train_on: str = "reply",
    eos: bool = True,
) -> dict[str, list[int]]:
    """Token ids of the chat as the chat template writes it, and labels.

    `train_on="reply"`: only the assistant turns are trained (their text and the template's
    end-of-turn after it); everything else is IGNORE_INDEX. `train_on="all"`: every token.
    `eos=False` masks the end-of-turn after each reply too: the mistake that leaves a model
    which never learns to stop. The text is cut where each turn starts, and each piece is
    tokenized on its own, so a label lines up with exactly the token it belongs to.
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on={train_on!r}: choose one of {', '.join(TRAIN_ON)}")
    messages = list(messages)
    pieces: list[tuple[str, bool]] = []  # (text, trained)
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True
        )
        after = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not before.startswith(done) or not after.startswith(before):
            raise ValueError("the chat template does not render each turn as a prefix of the next")
        pieces.append((before[len(done) :], False))
        reply = after[len(before) :]
        content = message["content"]
        if not eos and reply.startswith(content):
            pieces += [(content, True), (reply[len(content) :], False)]
        else:
            pieces.append((reply, True))
        done = after
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(done):
        raise ValueError("the chat template does not render each turn as a prefix of the next")
    pieces.append((full[len(done) :], False))
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in pieces:
        if not text:
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        input_ids += ids
        labels += ids if (trained or train_on == "all") else [IGNORE_INDEX] * len(ids)
    return {"input_ids": input_ids, "labels": labels}


def encode(
    tokenizer,
    records: Sequence[Record],
    max_length: int,
    *,
    train_on: str = "reply",
    eos: bool = True,
    what: str = "examples",
) -> list[dict[str, list[int]]]:
    """Every record tokenized (`tokenize_messages`); those longer than `max_length` tokens are
    cut to it, with one warning that counts them."""
    features = [
        tokenize_messages(tokenizer, r.messages, train_on=train_on, eos=eos) for r in records
    ]
    long = [f for f in features if len(f["input_ids"]) > max_length]
    if long:
        warnings.warn(
            f"{len(long)} of {len(features)} {what} are longer than the model's context "
            f"({max_length} tokens) and were truncated to it",
            stacklevel=2,
        )
    return [{k: v[:max_length] for k, v in f.items()} for f in features]
