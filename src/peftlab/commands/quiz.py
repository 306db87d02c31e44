"""`peftlab quiz`: rehearse interview answers; typed answers are checked against key points."""

import argparse
import sys
import textwrap

WIDTH = 88
QUIT = ":q"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from peftlab.quiz import NUMBER_TOLERANCE, TOPICS

    p = sub.add_parser(
        "quiz",
        help="interview flashcards with a self-check of typed answers and spaced repetition",
        description=(
            "Ask interview questions, check each typed answer against the key points "
            "(covered / missed; a number counts when it is within "
            f"{NUMBER_TOLERANCE:.0%} of the bank's, in a unit of the same kind), show the model "
            f"answer and the follow-up with its answer. Type {QUIT} to stop; progress is saved."
        ),
    )
    p.add_argument("--topic", default=None, help=f"one of {', '.join(TOPICS)} (default: all)")
    p.add_argument("--difficulty", default=None, help="easy, medium or hard (default: all)")
    p.add_argument("--n", type=int, default=5, help="number of questions (default: 5)")
    p.add_argument(
        "--reveal",
        action="store_true",
        help="flashcard mode: reveal the model answer, then say whether you knew it",
    )
    p.add_argument("--progress", action="store_true", help="show progress per topic and exit")
    p.add_argument("--seed", type=int, default=None, help="seed the question order")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from peftlab import quiz

    if args.n <= 0:
        raise ValueError(f"--n {args.n}: the number of questions must be a positive integer")
    bank = quiz.load_bank()
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

    progress.start_session()
    questions = quiz.choose(bank, progress, args.n, args.topic, args.difficulty, seed=args.seed)
    asked = known = 0
    try:
        for i, q in enumerate(questions, 1):
            print(f"\n[{i}/{len(questions)}] {q.topic} · {q.difficulty}")
            print(_wrap(f"Q: {q.question}"))
            knew = _flashcard(q) if args.reveal else _typed(quiz, q)
            if knew is None:
                break
            progress.record(q.id, knew)
            quiz.save_progress(progress, path)
            asked, known = asked + 1, known + int(knew)
    except (EOFError, KeyboardInterrupt) as exc:
        quiz.save_progress(progress, path)
        print(f"\nStopped after {asked} question(s); progress saved to {path}")
        return 130 if isinstance(exc, KeyboardInterrupt) else 0
    quiz.save_progress(progress, path)
    print(f"\nKnew {known} of {asked}. Progress saved to {path}")
    if asked > known:
        print("Missed questions come back first next time.")
    return 0


def _ask(prompt: str) -> str:
    """One line from the user (a terminal or piped stdin); EOFError when input ends."""
    return input(prompt).strip()


def _typed(quiz, q) -> bool | None:
    text = _ask("Your answer (one line; Enter to skip):\n> ")
    if text == QUIT:
        return None
    result = quiz.check_answer(q, text)
    print(f"\nCovered {len(result.covered)} of {len(q.key_points)} key points:")
    for kp in q.key_points:
        mark = "x" if kp in result.covered else " "
        print(_wrap(f"  [{mark}] {kp.point}", indent="      "))
    verdict = "knew it" if result.passed else "missed: it comes back next session"
    print(f"Result: {verdict} ({result.score:.0%})")
    _show_answer(q)
    return result.passed


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
    print("\nModel answer:")
    print(_wrap(q.answer, indent="  ", first="  "))
    print(_wrap(f"Common mistake: {q.mistakes[0]}"))
    print(_wrap(f"Follow-up: {q.follow_up}"))
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
