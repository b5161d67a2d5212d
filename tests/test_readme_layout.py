"""The README's layout table against the tree: every package and module of memsys/ has
exactly one row, the dashboard's three parts (app.py, pages/, components/) one each, and
no row names something that is gone. A row is `| `path` | what it holds |`, one path per
row; a package's row (`memsys/ingest/`) stands for its `__init__.py`."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from conftest import REPO

HEADING = "### Layout"
DASHBOARD = ("app.py", "pages/", "components/")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def layout_rows(readme: str) -> tuple[list[str], list[str]]:
    """The paths the table under HEADING lists, in order, and the rows that are not one
    backticked path in their first cell."""
    lines = readme.splitlines()
    assert HEADING in lines, f"README.md has no {HEADING!r} section"
    table = []
    for line in lines[lines.index(HEADING) + 1:]:
        if line.startswith("|"):
            table.append(line)
        elif table or line.startswith("#"):
            break
    assert len(table) > 2, f"no table under {HEADING!r} in README.md"
    paths, malformed = [], []
    for line in table[2:]:  # the header and its |---| line
        match = _ROW.match(line)
        if match and "`" not in line.split("|")[1].replace(f"`{match.group(1)}`", "", 1):
            paths.append(match.group(1))
        else:
            malformed.append(line)
    return paths, malformed


def tree_paths(root: Path) -> set[str]:
    """Every package (as `memsys/x/`) and module (`memsys/x/y.py`) of memsys, and the
    dashboard's three parts."""
    paths = set(DASHBOARD)
    for path in (root / "memsys").rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        relative = path.relative_to(root)
        if path.name == "__init__.py":
            paths.add(relative.parent.as_posix() + "/")
        else:
            paths.add(relative.as_posix())
    return paths


def layout_problems(readme: str, root: Path) -> list[str]:
    listed, malformed = layout_rows(readme)
    tree = tree_paths(root)
    counts = Counter(listed)
    problems = [f"not one backticked path in its first cell: {line}" for line in malformed]
    problems += [f"missing (in the tree, no row): `{p}`" for p in sorted(tree - set(listed))]
    problems += [f"listed {counts[p]} times: `{p}`" for p in sorted(p for p, n in counts.items() if n > 1)]
    problems += [f"gone (a row, not in the tree): `{p}`" for p in sorted(set(listed) - tree)]
    return problems


def test_the_readme_layout_lists_every_package_and_module_once() -> None:
    problems = layout_problems((REPO / "README.md").read_text(encoding="utf-8"), REPO)
    assert not problems, f"README.md's {HEADING!r} table does not match the tree:\n  " + "\n  ".join(problems)


def test_the_check_names_each_kind_of_drift(tmp_path: Path) -> None:
    (tmp_path / "memsys" / "ingest").mkdir(parents=True)
    for name in ("memsys/__init__.py", "memsys/store.py", "memsys/access.py", "memsys/ingest/__init__.py"):
        (tmp_path / name).write_text("", encoding="utf-8")
    readme = (
        f"# x\n\n{HEADING}\n\n| path | what it holds |\n|---|---|\n"
        "| `memsys/` | the API |\n| `memsys/store.py` | the store |\n| `memsys/store.py` | again |\n"
        "| `memsys/ingest/` | readers |\n| `memsys/gone.py` | removed |\n"
        "| `memsys/a.py`, `memsys/b.py` | two in one row |\n"
        "| `app.py` | navigation |\n| `pages/` | pages |\n| `components/` | widgets |\n\n## Next\n"
    )
    assert layout_problems(readme, tmp_path) == [
        "not one backticked path in its first cell: | `memsys/a.py`, `memsys/b.py` | two in one row |",
        "missing (in the tree, no row): `memsys/access.py`",
        "listed 2 times: `memsys/store.py`",
        "gone (a row, not in the tree): `memsys/gone.py`",
    ]
