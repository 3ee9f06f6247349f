"""The two dependency lists agree, and the documented entry points are what CI and the README use."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def normalize(name: str) -> str:
    """Package names compare case-insensitively with runs of ``-``, ``_`` and ``.`` alike (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(text: str) -> tuple[str, str]:
    """``"numpy >= 1.26, <2.4"`` -> ``("numpy", ">=1.26,<2.4")``; the constraint without spaces."""
    text = text.split(";", 1)[0]  # environment markers are not part of the constraint
    match = _REQUIREMENT.match(text)
    assert match, f"cannot parse requirement {text!r}"
    return normalize(match.group(1)), re.sub(r"\s+", "", match.group(3))


def pyproject_dependencies() -> dict[str, str]:
    with open(PROJECT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    deps = [split_requirement(d) for d in project["dependencies"]]
    names = [name for name, _ in deps]
    assert len(names) == len(set(names)), f"duplicate dependency in pyproject.toml: {names}"
    return dict(deps)


def environment_dependencies(text: str) -> dict[str, str]:
    """The conda entries of ``dependencies:`` in an environment.yml (the nested ``pip:`` list excluded)."""
    entries, in_deps, item_indent = [], False, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            in_deps = line.strip() == "dependencies:"
            continue
        if not in_deps:
            continue
        stripped = line.strip()
        if not stripped.startswith("- "):
            continue
        if item_indent is None:
            item_indent = indent
        if indent != item_indent:
            continue  # entries of the nested pip: list
        item = stripped[2:].strip().strip("'\"")
        if item.endswith(":"):
            continue  # "- pip:" opens the nested list
        entries.append(item)
    deps = {}
    for entry in entries:
        name, constraint = split_requirement(entry)
        assert name not in deps, f"duplicate entry {name!r} in environment.yml"
        deps[name] = constraint
    return deps


def test_environment_parser_on_a_sample():
    sample = """# comment
name: x
channels:
  - conda-forge
dependencies:
  - python>=3.11
  - Scikit_Learn >=1.4   # spaced
  - pip
  - pip:
      - -e .
      - extra-pip-only==1
other:
  - not-a-dependency
"""
    assert environment_dependencies(sample) == {"python": ">=3.11", "scikit-learn": ">=1.4", "pip": ""}


def test_every_pyproject_dependency_is_in_environment_yml_with_the_same_constraint():
    wanted = pyproject_dependencies()
    assert "brian2" in wanted and "numpy" in wanted
    have = environment_dependencies((PROJECT / "environment.yml").read_text())
    missing = sorted(set(wanted) - set(have))
    assert not missing, f"in pyproject.toml but not in environment.yml: {missing}"
    different = {name: (wanted[name], have[name]) for name in wanted if wanted[name] != have[name]}
    assert not different, f"constraints differ (pyproject, environment.yml): {different}"


def test_environment_yml_python_and_test_tools_agree_with_pyproject():
    """Of the extra entries (python, pip, pytest …), python and the test extra follow pyproject too."""
    with open(PROJECT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    test_extra = dict(split_requirement(d) for d in project.get("optional-dependencies", {}).get("test", []))
    have = environment_dependencies((PROJECT / "environment.yml").read_text())
    assert test_extra, "pyproject.toml has no test extra"
    for name, constraint in test_extra.items():
        assert have.get(name) == constraint, (name, constraint, have.get(name))
    requires_python = project["requires-python"].replace(" ", "")
    assert have.get("python") == requires_python


@pytest.mark.parametrize("text, expected", [
    ("numpy>=1.26,<2.4", ("numpy", ">=1.26,<2.4")),
    ("Scikit_Learn >= 1.4", ("scikit-learn", ">=1.4")),
    ("brian2==2.9.0; python_version>'3'", ("brian2", "==2.9.0")),
    ("tqdm", ("tqdm", "")),
])
def test_split_requirement(text, expected):
    assert split_requirement(text) == expected


def test_ci_runs_make_test():
    script = (PROJECT / ".ci" / "run").read_text()
    commands = [line.split("#", 1)[0].strip() for line in script.splitlines()]
    assert "make test" in commands, script


def test_readme_starts_with_make_demo_and_make_test():
    head = "\n".join((PROJECT / "README.md").read_text().splitlines()[:10])
    assert re.search(r"\bmake demo\b", head), head
    assert re.search(r"\bmake test\b", head), head


def test_makefile_defines_demo_and_test_targets():
    makefile = (PROJECT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile, flags=re.M))
    assert {"demo", "test"} <= targets, targets
