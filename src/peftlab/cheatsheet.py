"""`python -m peftlab.cheatsheet`: regenerate the interview cheat sheet (`--check`: is it current?).

The code lives in `peftlab.quiz.cheatsheet`; this module keeps the command that the README and
the generated `lessons/06-interview-cheatsheet.md` name working.
"""

import sys

from peftlab.quiz.cheatsheet import default_path, main, render, write

__all__ = ["default_path", "main", "render", "write"]

if __name__ == "__main__":
    sys.exit(main())
