"""The module map in docs/architecture.md and the README's layout describe the tree as it is."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "herald"
SKIP = {"__init__.py", "__main__.py"}


def _layer_table() -> dict[str, str]:
    """Package (or top-level module) → the text of its cell in the layer table."""
    text = (ROOT / "docs" / "architecture.md").read_text("utf-8")
    section = text.split("## Reading `herald/`", 1)[1].split("\n## ", 1)[0]
    cells: dict[str, str] = {}
    for row in section.splitlines():
        parts = [p.strip() for p in row.strip("|").split("|")]
        if len(parts) != 3 or parts[0] in ("layer", "---"):
            continue
        names = re.findall(r"`([\w.]+/?)`", parts[1])
        texts = parts[2].split(" · ")
        if len(texts) != len(names):
            texts = [parts[2]] * len(names)
        cells.update(zip(names, texts, strict=True))
    return cells


def test_every_package_and_top_module_is_in_the_layer_table() -> None:
    cells = _layer_table()
    tree = {p.name + "/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    tree |= {p.name for p in PACKAGE.glob("*.py") if p.name not in SKIP}
    assert tree == set(cells), "docs/architecture.md's layer table differs from herald/"


def test_modules_named_in_the_layer_table_exist() -> None:
    for name, cell in _layer_table().items():
        if not name.endswith("/"):
            continue
        for module in re.findall(r"`(\w+\.py)`", cell):
            assert (PACKAGE / name / module).exists(), f"{name}{module}: in the docs, not the tree"


def test_readme_layout_names_existing_folders() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"^(herald/[\w/.]+)", layout, re.M)
    assert named, "the README's layout lists no herald/ folders"
    for path in named:
        assert (ROOT / path).exists(), f"README names {path}, which does not exist"
    packages = {f"herald/{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(named), f"README's layout misses {sorted(packages - set(named))}"
