"""`peftlab quiz`: rehearse interview answers, graded per key point as an interviewer would;
`peftlab quiz check ID` grades one answer read from standard input."""

import argparse
import difflib
import json
import sys
import textwrap

WIDTH = 88
QUIT = ":q"
SKIP = ":s"
MARKS = {"knew": "x", "unsure": "?", "missed": " "}


def add_parser(sub: argparse._SubParsersAction) -> None:
    from peftlab.quiz import NUMBER_TOLERANCE, PASS_SCORE, PROGRESS_FILE, TOPICS, UNSURE_FLOOR

    p = sub.add_parser(
        "quiz",
        help="interview flashcards, graded per key point, with spaced repetition",
        description=(
            "Ask interview questions and grade each typed answer per key point: knew, missed or "
            "unsure. An answer is 'knew' when at least "
            f"{PASS_SCORE:.0%} of its key points are (the pass mark), 'missed' when fewer than "
            f"{UNSURE_FLOOR:.0%} are even partly there or it states a listed mistake, and "
            "'unsure' otherwise: then you say whether you knew it, after seeing the key points. "
            "You may override any verdict ('I did say that'); your final word is what the "
            "Leitner boxes record. A number counts within "
            f"{NUMBER_TOLERANCE:.0%} of the bank's, in a unit of the same kind. Answers may span "
            f"several lines: finish with an empty line. Enter alone (or {SKIP}) skips a question "
            f"without failing it; {QUIT} quits (nothing answered: the session is not counted). "
            f"Progress is kept in $PEFTLAB_DATA_DIR/{PROGRESS_FILE} (default: the user data "
            "folder)."
        ),
    )
    p.add_argument("--topic", default=None, help=f"one of {', '.join(TOPICS)} (default: all)")
    p.add_argument("--difficulty", default=None, help="easy, medium or hard (default: all)")
    p.add_argument("--id", default=None, dest="qid", help="drill this one question (by its id)")
    p.add_argument("--n", type=int, default=5, help="number of questions (default: 5)")
    p.add_argument(
        "--reveal",
        action="store_true",
        help="flashcard mode: reveal the model answer, then say whether you knew it",
    )
    p.add_argument("--progress", action="store_true", help="show progress per topic and exit")
    p.add_argument("--seed", type=int, default=None, help="seed the question order")
    p.set_defaults(run=run)
    actions = p.add_subparsers(dest="action", metavar="{check}", parser_class=type(p))
    c = actions.add_parser(
        "check",
        help="grade one answer read from standard input",
        description=(
            "Read an answer on standard input, grade it against question ID's key points and "
            "print the verdict (knew, missed or unsure) with each point's verdict and why. "
            "Exit 0 whatever the verdict; an unknown ID is an error (exit 2). Progress is not "
            "touched."
        ),
    )
    c.add_argument("id", help="the question's id, e.g. lora-explain")
    c.add_argument(
        "--json",
        action="store_true",
        help='print {"id", "verdict", "score", "points": [{"point", "verdict", "why"}]}',
    )
    c.set_defaults(run=run_check)


def _question(bank, qid: str):
    for q in bank:
        if q.id == qid:
            return q
    close = difflib.get_close_matches(qid, [q.id for q in bank], n=3)
    where = "; the ids are in the package's quiz/questions/<topic>.yaml"
    hint = f"; did you mean {', '.join(close)}?" if close else where
    raise ValueError(f"unknown question id {qid!r}{hint}")


def run_check(args: argparse.Namespace) -> int:
    from peftlab import quiz

    q = _question(quiz.load_bank(), args.id)
    result = quiz.grade(q, sys.stdin.read())
    if args.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    else:
        print(f"{q.id}: {result.verdict} (score {result.score:.0%})")
        _print_points(result)
    return 0


def run(args: argparse.Namespace) -> int:
    from peftlab import quiz

    if args.n <= 0:
        raise ValueError(f"--n {args.n}: the number of questions must be a positive integer")
    bank = quiz.load_bank()
    if args.qid is not None:
        pool = [_question(bank, args.qid)]
    else:
        pool = quiz.filter_bank(bank, args.topic, args.difficulty)
    if not pool:
        raise ValueError(
            f"no questions for --topic {args.topic} --difficulty {args.difficulty}; "
            "drop one of the filters"
        )
    path = quiz.progress_path()
    progress, notice = quiz.load_progress(path)
    if notice:
        print(f"peftlab quiz: {notice}", file=sys.stderr)
    if args.progress:
        _print_progress(quiz.summary(bank, progress), path)
        return 0

    _line_editing()
    progress.start_session()
    if args.qid is not None:
        questions = pool
    else:
        questions = quiz.choose(bank, progress, args.n, args.topic, args.difficulty, args.seed)
    asked = known = skipped = 0
    try:
        for i, q in enumerate(questions, 1):
            print(f"\n[{i}/{len(questions)}] {q.topic} · {q.difficulty} · {q.id}")
            print(_wrap(f"Q: {q.question}"))
            knew = _flashcard(q) if args.reveal else _typed(quiz, q)
            if knew is None:
                break
            if knew == SKIP:
                skipped += 1
                continue
            progress.record(q.id, knew)
            quiz.save_progress(progress, path)
            asked, known = asked + 1, known + int(knew)
    except (EOFError, KeyboardInterrupt) as exc:
        if asked:
            quiz.save_progress(progress, path)
        print(f"\nStopped after {asked} question(s); progress saved to {path}")
        return 130 if isinstance(exc, KeyboardInterrupt) else 0
    if asked:
        quiz.save_progress(progress, path)
        print(f"\nKnew {known} of {asked}. Progress saved to {path}")
    else:
        print("\nNothing answered: progress and the session count are unchanged.")
    if skipped:
        print(f"Skipped {skipped}: they stay due.")
    if asked > known:
        print("Missed questions come back first next time.")
    return 0


def _line_editing() -> None:
    """Arrow keys and history in `input()` on a terminal (readline, where Python has it)."""
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401
        except ImportError:
            pass


def _ask(prompt: str) -> str:
    """One line from the user (a terminal or piped stdin); EOFError when input ends."""
    return input(prompt).strip()


def _read_answer() -> str | None:
    """An answer of one or more lines, ended by an empty line or the end of input: None to quit,
    SKIP to skip."""
    first = _ask(f"Your answer (end with an empty line; Enter alone skips, {QUIT} quits):\n> ")
    if first == QUIT:
        return None
    if first in ("", SKIP):
        return SKIP
    lines = [first]
    while True:
        try:
            line = _ask("  ")
        except EOFError:
            break
        if not line:
            break
        lines.append(line)
    return "\n".join(lines)


def _typed(quiz, q):
    text = _read_answer()
    if text is None or text == SKIP:
        return text
    result = quiz.grade(q, text)
    print(f"\nChecker: {result.verdict} ({result.score:.0%}; pass mark {quiz.PASS_SCORE:.0%})")
    _print_points(result)
    _show_answer(q)
    return _self_assess(result.verdict)


def _self_assess(verdict: str) -> bool | None:
    """The final verdict: the learner decides an unsure one and may override the others."""
    if verdict == "unsure":
        prompt = "The checker can't tell. Did you know it? [y/n] "
    else:
        other = "y = I did say that" if verdict == "missed" else "n = I didn't really"
        prompt = f"Enter accepts '{verdict}' ({other}) "
    while True:
        reply = _ask(prompt).lower()
        if reply == QUIT:
            return None
        if reply == "" and verdict != "unsure":
            return verdict == "knew"
        if reply in ("y", "yes", "n", "no"):
            return reply.startswith("y")
        print("Please answer y or n.")


def _print_points(result) -> None:
    for p in result.points:
        line = f"  [{MARKS[p.verdict]}] {p.point}"
        if p.verdict != "knew":
            line += f" ({p.why})"
        print(_wrap(line, indent="      "))


def _flashcard(q) -> bool | None:
    if _ask("Press Enter to reveal the model answer ") == QUIT:
        return None
    _show_answer(q)
    print("Key points:")
    for kp in q.key_points:
        print(_wrap(f"  - {kp.point}", indent="    "))
    while True:
        reply = _ask("Did you know it? [y/n] ").lower()
        if reply == QUIT:
            return None
        if reply in ("y", "yes", "n", "no"):
            return reply.startswith("y")
        print("Please answer y or n.")


def _show_answer(q) -> None:
    print("Model answer:")
    print(_wrap(q.answer, indent="  ", first="  "))
    print(_wrap(f"Common mistake: {q.mistakes[0]}"))
    print(_wrap(f"Follow-up: {q.follow_up}"))
    if _ask("  (think of your answer, then press Enter) ") == QUIT:
        raise EOFError
    print(_wrap(q.follow_up_answer, indent="  ", first="  "))
    print(f"(from {q.lesson})")


def _print_progress(rows: list[dict], path) -> None:
    header = f"{'topic':<18} {'questions':>9} {'seen':>5} {'known':>6} {'due':>4}   boxes 1-5"
    print(header)
    print("-" * len(header))
    for r in rows:
        boxes = " ".join(f"{r['boxes'][b]:>2}" for b in sorted(r["boxes"]))
        print(
            f"{r['topic']:<18} {r['questions']:>9} {r['seen']:>5} {r['known']:>6} "
            f"{r['due']:>4}   {boxes}"
        )
    print(f"\nProgress file: {path}")


def _wrap(text: str, indent: str = "  ", first: str = "") -> str:
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=indent)
