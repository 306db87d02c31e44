"""Interview rehearsal: the question bank, Leitner-box scheduling and a typed-answer self-check.

The bank lives in `peftlab/quiz/questions/<topic>.yaml`, shipped with the package. Each key
point names the concepts an answer must mention to cover it; `check_answer` matches them on word
stems and a small synonym table, so "quantized the frozen weights" covers a point written as
"quantize, freeze"; numbers count when they round sensibly to the bank's figure ("~300 MB" for
302 MB: within `NUMBER_TOLERANCE`, 4%, or a question's own `tolerance`), in a unit of the same
kind.

- `quiz.phrasing`: the ways people say things (abbreviations, symbols, number words, synonyms,
  negations), one table for every question (`rewrite`, `SYNONYM_GROUPS`)
- `quiz.matching`: tokenising, stemming (`stem_word`), numbers with units (`Quantity`,
  `quantities`, `NUMBER_TOLERANCE`), `KeyPoint`
- `quiz.grading`: `grade` (per key point `knew` / `missed` / `unsure`, negation, listed
  mistakes), `Grade`, `final_verdict` (what the schedule records), `check_answer`, `Check`
- `quiz.bank`: `Question`, `Topic`, loading and validating the YAML bank, topics and difficulties
- `quiz.progress`: Leitner boxes (`Card`, `Progress`), loading and saving the progress file
- `quiz.selection`: `filter_bank`, `choose`, `summary`, `interview_round`, `simulate_learner`

The cheat sheet that lays the bank out (lessons/06) is `peftlab.lessons.lesson06_interview`.

The names below are re-exported, so `from peftlab import quiz; quiz.load_bank()` works. Nothing
here reads the lessons at import time: the bank is found when it is loaded.
"""

from peftlab.quiz.bank import (
    ANSWER_WORDS,
    DIFFICULTIES,
    FOLLOW_UP_WORDS,
    KEY_POINTS,
    TOPICS,
    Question,
    Topic,
    default_bank_dir,
    lesson_files,
    load_bank,
    load_topic,
    load_topics,
)
from peftlab.quiz.grading import (
    KNEW,
    MISSED,
    UNSURE,
    UNSURE_FLOOR,
    VERDICTS,
    Check,
    Grade,
    PointGrade,
    check_answer,
    final_verdict,
    grade,
)
from peftlab.quiz.matching import (
    NUMBER_TOLERANCE,
    PASS_SCORE,
    STOPWORDS,
    KeyPoint,
    Quantity,
    normalize,
    quantities,
    stem_word,
)
from peftlab.quiz.phrasing import SYNONYM_GROUPS, rewrite
from peftlab.quiz.progress import (
    BOX_INTERVAL_SESSIONS,
    BOXES,
    PROGRESS_FILE,
    PROGRESS_VERSION,
    Card,
    Progress,
    load_progress,
    progress_path,
    save_progress,
)
from peftlab.quiz.selection import (
    choose,
    filter_bank,
    interview_round,
    simulate_learner,
    summary,
)

__all__ = [
    "ANSWER_WORDS",
    "BOXES",
    "BOX_INTERVAL_SESSIONS",
    "Card",
    "Check",
    "Grade",
    "KNEW",
    "MISSED",
    "PointGrade",
    "UNSURE",
    "UNSURE_FLOOR",
    "VERDICTS",
    "final_verdict",
    "grade",
    "rewrite",
    "DIFFICULTIES",
    "FOLLOW_UP_WORDS",
    "KEY_POINTS",
    "KeyPoint",
    "lesson_files",
    "NUMBER_TOLERANCE",
    "PASS_SCORE",
    "PROGRESS_FILE",
    "PROGRESS_VERSION",
    "Progress",
    "Quantity",
    "Question",
    "STOPWORDS",
    "SYNONYM_GROUPS",
    "TOPICS",
    "Topic",
    "check_answer",
    "choose",
    "default_bank_dir",
    "filter_bank",
    "interview_round",
    "load_bank",
    "load_progress",
    "load_topic",
    "load_topics",
    "normalize",
    "progress_path",
    "quantities",
    "save_progress",
    "simulate_learner",
    "stem_word",
    "summary",
]
