"""Progress through the bank as Leitner boxes, kept in a JSON file in the user's data folder.

A card the learner knew moves up a box and waits longer before it is due again; a missed one
drops to box 1 and is due every session. The file is written atomically, and a corrupt one is
renamed aside (kept) and replaced by a fresh start.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from peftlab.atomic import atomic_write_text

BOXES = 5
BOX_INTERVAL_SESSIONS = {1: 1, 2: 2, 3: 4, 4: 8, 5: 16}
PROGRESS_FILE = "quiz-progress.json"
PROGRESS_VERSION = 1


def progress_path() -> Path:
    """Where progress is kept: $PEFTLAB_DATA_DIR, else the user's data folder."""
    root = os.environ.get("PEFTLAB_DATA_DIR") or platformdirs.user_data_dir("peftlab")
    return Path(root) / PROGRESS_FILE


@dataclass
class Card:
    """What we know about one question: its box (1 = missed recently) and its history."""

    box: int = 1
    seen: int = 0
    correct: int = 0
    last_session: int = 0


@dataclass
class Progress:
    """Leitner boxes: a known card moves up a box and waits longer; a missed one drops to box 1."""

    session: int = 0
    cards: dict[str, Card] = field(default_factory=dict)

    def start_session(self) -> None:
        self.session += 1

    def record(self, qid: str, knew: bool) -> None:
        card = self.cards.setdefault(qid, Card())
        card.seen += 1
        card.correct += int(knew)
        card.box = min(card.box + 1, BOXES) if knew else 1
        card.last_session = self.session

    def is_due(self, qid: str) -> bool:
        card = self.cards.get(qid)
        if card is None:
            return True
        return self.session - card.last_session >= BOX_INTERVAL_SESSIONS[card.box]

    def to_json(self) -> str:
        cards = {k: vars(v) for k, v in sorted(self.cards.items())}
        data = {"version": PROGRESS_VERSION, "session": self.session, "cards": cards}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Progress:
        """Parse a progress file; raise ValueError if it is not one we wrote."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != PROGRESS_VERSION:
            raise ValueError("not a version-1 progress file")
        session, raw_cards = data.get("session"), data.get("cards")
        if not isinstance(session, int) or session < 0 or not isinstance(raw_cards, dict):
            raise ValueError("'session' or 'cards' is malformed")
        cards = {}
        for qid, raw in raw_cards.items():
            if not isinstance(raw, dict) or set(raw) != set(vars(Card())):
                raise ValueError(f"card {qid!r} is malformed")
            if not all(isinstance(v, int) for v in raw.values()) or not 1 <= raw["box"] <= BOXES:
                raise ValueError(f"card {qid!r} has bad values")
            cards[qid] = Card(**raw)
        return cls(session=session, cards=cards)


def load_progress(path: str | os.PathLike | None = None) -> tuple[Progress, str | None]:
    """Read progress; a corrupt file is renamed aside (kept) and a fresh start is returned.

    The second value is a message for the user when that happened, else None.
    """
    path = Path(path) if path is not None else progress_path()
    if not path.exists():
        return Progress(), None
    try:
        return Progress.from_json(path.read_text(encoding="utf-8")), None
    except (ValueError, UnicodeDecodeError) as exc:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        i = 1
        while aside.exists():
            aside = path.with_name(f"{path.name}.corrupt-{stamp}-{i}")
            i += 1
        os.replace(path, aside)
        message = (
            f"quiz progress file {path} could not be read ({exc}); "
            f"kept it as {aside} and started fresh"
        )
        return Progress(), message


def save_progress(progress: Progress, path: str | os.PathLike | None = None) -> Path:
    """Write progress atomically (a crash leaves the old file or the new one, never half)."""
    path = Path(path) if path is not None else progress_path()
    atomic_write_text(path, progress.to_json())
    return path
