"""The package's import graph: every module in a layer, no upward arrows, no cycles.

Read `LAYERS` as the map of `src/peftlab`: a module may import modules of its own layer or of a
lower one, never of a higher one, and no two modules may import each other (directly or round a
longer loop). Imports are read with `ast`, at any depth (inside functions too), without importing
the package, so the test is quick and sees imports that only run when a function is called.

A new module must be placed in a layer here and in docs/ARCHITECTURE.md before this test passes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. An entry names a module, or a package together with everything inside it
# ("peftlab" alone is only the package's __init__).
LAYERS: dict[str, tuple[str, ...]] = {
    # Plumbing every other module may use; imports nothing above itself.
    "base": (
        "peftlab",
        "peftlab.seed",
        "peftlab.atomic",
        "peftlab.tables",
        "peftlab.paths",
        "peftlab.quiet",
    ),
    # One idea each: the maths, models, data and measurements the lessons teach.
    "core": (
        "peftlab.presets",
        "peftlab.activation_memory",
        "peftlab.activation_counts",
        "peftlab.memory",
        "peftlab.lora",
        "peftlab.nf4",
        "peftlab.world",
        "peftlab.echo",
        "peftlab.support_data",
        "peftlab.rubric",
        "peftlab.measure",
        "peftlab.models",
        "peftlab.base_model",
        "peftlab.generate",
        "peftlab.compare",
        "peftlab.tuning",
        "peftlab.finetune",
        "peftlab.chat_records",
        "peftlab.own_data",
        "peftlab.packing",
        "peftlab.lora_train",
        "peftlab.schedule",
        "peftlab.merging",
        "peftlab.merging_4bit",
        "peftlab.adapters",
        "peftlab.exercises",
        "peftlab.quiz",
        "peftlab.html_site",
        "peftlab.sharding",
        "peftlab.ddp",
        "peftlab.serving",
        "peftlab.peft_methods",
        "peftlab.worker_processes",
        "peftlab.peft_family",
        "peftlab.forgetting",
        "peftlab.preferences",
        "peftlab.grpo",
    ),
    # One module per lesson (results, quotes, figures, tables) and the prose mechanism.
    "lessons": ("peftlab.lessons",),
    # What a learner touches: notebook widgets, the command line, notebook setup.
    "presentation": (
        "peftlab.widgets",
        "peftlab.cli",
        "peftlab.commands",
        "peftlab.notebook",
    ),
}
RANK = {layer: i for i, layer in enumerate(LAYERS)}
PLACE_IT = "put it in a layer in LAYERS in tests/test_layout.py and in docs/ARCHITECTURE.md"


# --- reading the graph ---------------------------------------------------------------------------
def modules(src: Path = SRC, package: str = "peftlab") -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__)."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(
    module: str, path: Path, known: Mapping[str, Path], package: str = "peftlab"
) -> list[tuple[str, int]]:
    """The package modules `module` imports, with the line of each import statement."""
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from .x import y
                here = module.split(".") if is_package else module.split(".")[:-1]
                here = here[: len(here) - (node.level - 1)]
                base = ".".join(here + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import x` imports module pkg.x when x is one, else a name of pkg
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == package or name.startswith(f"{package}."):
                out.append((name, node.lineno))
    return out


def graph(src: Path = SRC, package: str = "peftlab") -> dict[str, dict[str, int]]:
    """Module -> {imported module: first line importing it}, package modules only."""
    known = modules(src, package)
    edges: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges[name] = {}
        for target, line in sorted(imports(name, path, known, package), key=lambda t: t[1]):
            if target != name:  # a module naming itself (its own package's names) is no arrow
                edges[name].setdefault(target, line)
    return edges


def layer_of(module: str, layers: Mapping[str, Iterable[str]] = LAYERS) -> str | None:
    """The layer whose entry is the module itself or the package holding it (longest wins)."""
    best, best_len = None, -1
    for layer, entries in layers.items():
        for entry in entries:
            inside = module == entry or ("." in entry and module.startswith(f"{entry}."))
            if inside and len(entry) > best_len:
                best, best_len = layer, len(entry)
    return best


# --- the rules -----------------------------------------------------------------------------------
def unplaced(edges: Mapping[str, Mapping[str, int]]) -> list[str]:
    return [f"{m} is in no layer: {PLACE_IT}" for m in sorted(edges) if layer_of(m) is None]


def missing(edges: Mapping[str, Mapping[str, int]], src: Path = SRC) -> list[str]:
    return [
        f"{m} (line {line}) imports {target}, which is not a module under {src.name}/"
        for m, targets in sorted(edges.items())
        for target, line in targets.items()
        if target not in edges
    ]


def upward(edges: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Every import of a module in a higher layer than the importer's."""
    out = []
    for m, targets in sorted(edges.items()):
        low = layer_of(m)
        for target, line in targets.items():
            high = layer_of(target)
            if low is None or high is None or RANK[high] <= RANK[low]:
                continue
            out.append(f"{m} ({low}, line {line}) imports {target} ({high}): upward")
    return out


def cycles(edges: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """Each group of modules that import each other, directly or round a loop (Tarjan's SCCs)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the package's ~60 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in edges:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(groups)


def describe(group: list[str], edges: Mapping[str, Mapping[str, int]]) -> str:
    """A cycle as the imports that close it: every import between its modules."""
    inside = [
        f"{a} (line {line}) imports {b}"
        for a in group
        for b, line in edges[a].items()
        if b in group
    ]
    return f"import cycle among {', '.join(group)}: " + "; ".join(inside)


# --- the tests -----------------------------------------------------------------------------------
def _none(found: list[str]) -> None:
    assert not found, "\n".join(["", *found])


MAX_LINES = 500  # a module longer than this holds several ideas: split it (lessons/ aside)


def too_long(known: Mapping[str, Path], limit: int = MAX_LINES) -> list[str]:
    """Modules over `limit` lines, outside `lessons/` (a lesson module quotes a whole lesson)."""
    return [
        f"{name}: {n} lines (at most {limit}: split it by idea)"
        for name, path in known.items()
        if ".lessons." not in f"{name}." and (n := len(path.read_text().splitlines())) > limit
    ]


def test_no_module_outside_the_lessons_is_over_500_lines(tmp_path):
    _none(too_long(modules()))
    # the check itself: a long core module is reported, a long lesson module is not
    (tmp_path / "peftlab" / "lessons").mkdir(parents=True)
    (tmp_path / "peftlab" / "big.py").write_text("x = 1\n" * 501)
    (tmp_path / "peftlab" / "lessons" / "long.py").write_text("x = 1\n" * 900)
    assert [line.split(":")[0] for line in too_long(modules(tmp_path))] == ["peftlab.big"]


def test_every_module_is_in_a_layer():
    _none(unplaced(graph()))


def test_every_import_names_an_existing_module():
    _none(missing(graph()))


def test_no_module_imports_a_higher_layer():
    _none(upward(graph()))


def test_no_import_cycles():
    edges = graph()
    _none([describe(group, edges) for group in cycles(edges)])


def test_the_checks_catch_what_they_look_for(tmp_path):
    """A made-up package with one of each fault: the checks must report every one."""
    pkg = tmp_path / "peftlab"
    (pkg / "lessons").mkdir(parents=True)
    (pkg / "widgets").mkdir()
    files = {
        "__init__.py": "",
        "memory.py": "def f():\n    from peftlab.lessons import one  # upward, inside a function\n",
        "lora.py": "import peftlab.nf4\n",
        "nf4.py": "from peftlab.lora import LoRALinear\n",
        "lessons/__init__.py": "from . import one\n",
        "lessons/one.py": "from peftlab import widgets\nfrom .two import x\n",
        "lessons/two.py": "from peftlab.lessons.one import y\n",
        "widgets/__init__.py": "from peftlab import gone\nfrom peftlab.lora import x\n",
        "stray.py": "",
    }
    for name, text in files.items():
        (pkg / name).write_text(text)
    edges = graph(tmp_path)
    assert edges["peftlab.memory"] == {"peftlab.lessons.one": 2}
    assert edges["peftlab.widgets"] == {"peftlab": 1, "peftlab.lora": 2}
    assert unplaced(edges) == [f"peftlab.stray is in no layer: {PLACE_IT}"]
    assert missing(edges, tmp_path) == []  # `gone` is no module: a name of peftlab's __init__
    assert upward(edges) == [
        "peftlab.lessons.one (lessons, line 1) imports peftlab.widgets (presentation): upward",
        "peftlab.memory (core, line 2) imports peftlab.lessons.one (lessons): upward",
    ]
    assert [describe(group, edges) for group in cycles(edges)] == [
        "import cycle among peftlab.lessons.one, peftlab.lessons.two: "
        "peftlab.lessons.one (line 2) imports peftlab.lessons.two; "
        "peftlab.lessons.two (line 1) imports peftlab.lessons.one",
        "import cycle among peftlab.lora, peftlab.nf4: "
        "peftlab.lora (line 1) imports peftlab.nf4; peftlab.nf4 (line 1) imports peftlab.lora",
    ]
    (pkg / "lora.py").write_text("from peftlab.old_nf4 import quantize\n")
    assert missing(graph(tmp_path), tmp_path) == [
        f"peftlab.lora (line 1) imports peftlab.old_nf4, which is not a module under "
        f"{tmp_path.name}/"
    ]
