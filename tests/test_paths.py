"""`peftlab.paths`: the checkout with the lessons and notebooks is found, or the fix is named."""

from pathlib import Path

import pytest

from peftlab import paths


def make_checkout(folder: Path) -> Path:
    """A minimal peft-lab checkout: the one lesson file `course_root` looks for."""
    (folder / "lessons").mkdir(parents=True)
    (folder / "lessons" / "01-peft-basics.md").write_text("# 01 — PEFT basics\n")
    return folder


@pytest.fixture
def no_checkout(tmp_path, monkeypatch) -> Path:
    """No checkout anywhere: an installed package (site-packages), run from an empty folder."""
    monkeypatch.delenv("PEFTLAB_ROOT", raising=False)
    monkeypatch.setattr(paths, "PACKAGE", tmp_path / "venv" / "site-packages" / "peftlab")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def test_peftlab_root_names_the_checkout(no_checkout, monkeypatch):
    root = make_checkout(no_checkout / "elsewhere" / "peft-lab")
    monkeypatch.setenv("PEFTLAB_ROOT", str(root))
    assert paths.course_root() == root
    assert paths.lessons_dir() == root / "lessons"
    assert paths.notebooks_dir() == root / "notebooks"


def test_peftlab_root_comes_before_the_source_checkout(monkeypatch, tmp_path):
    root = make_checkout(tmp_path / "peft-lab")
    monkeypatch.setenv("PEFTLAB_ROOT", str(root))
    assert paths.course_root() == root  # though this test runs from a checkout itself


def test_the_current_folder_or_one_above_it_is_a_checkout(no_checkout, monkeypatch):
    root = make_checkout(no_checkout / "peft-lab")
    (root / "notebooks").mkdir()
    monkeypatch.chdir(root / "notebooks")
    assert paths.course_root() == root.resolve()


def test_without_a_checkout_the_error_says_to_set_peftlab_root(no_checkout):
    for find in (paths.course_root, paths.lessons_dir, paths.notebooks_dir):
        with pytest.raises(FileNotFoundError, match="PEFTLAB_ROOT"):
            find()


def test_the_source_checkout_is_found_from_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv("PEFTLAB_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.course_root() == Path(__file__).resolve().parents[1]


def test_a_peftlab_root_that_is_no_checkout_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"PEFTLAB_ROOT={tmp_path} is not a peft-lab"):
        paths.course_root()
