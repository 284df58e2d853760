"""Import rules of STYLE.md, checked on the source: services never import each other, libs never
import services, inside a service api → domain → store only (never upward), and the sample
relying parties of examples/ use nothing of Tsunagu's code (public interfaces only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {p.name.replace("-", "_") for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists()}
LAYERS = ["api", "domain", "store"]  # each may import only the layers after it


def _python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.startswith("tsunagu.")}


def _service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in SERVICES else None


def _violations() -> list[str]:
    problems = []
    for path in _python_files("libs"):
        problems += [
            f"{path.relative_to(ROOT)} imports service {m}" for m in _imports(path) if _service_of(m)
        ]
    for path in _python_files("services"):
        rel = path.relative_to(ROOT / "services")
        own = rel.parts[0].replace("-", "_")
        layer = rel.parts[1] if len(rel.parts) > 2 and rel.parts[1] in LAYERS else None
        for module in _imports(path):
            other = _service_of(module)
            if other and other != own:
                problems.append(f"{path.relative_to(ROOT)} imports another service: {module}")
            if other == own and layer:
                target = module.split(".")[2] if len(module.split(".")) > 2 else None
                if target in LAYERS and LAYERS.index(target) < LAYERS.index(layer):
                    problems.append(f"{path.relative_to(ROOT)} ({layer}) imports upward: {module}")
    for path in _python_files("examples"):
        problems += [f"{path.relative_to(ROOT)} imports Tsunagu's code: {m}" for m in _imports(path)]
    return problems


def test_import_rules_hold():
    assert _violations() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("libs/x/__init__.py", "imports service"),
        ("services/ca/store/models.py", "imports upward"),
        ("services/ca/domain/rules.py", "imports another service"),
        ("examples/bank/__init__.py", "imports Tsunagu's code"),
    ],
)
def test_the_rules_catch_violations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
):
    """The checker itself can fail: plant a violation in a scratch tree and see it reported."""
    bad = {
        "libs/x/__init__.py": "import tsunagu.ca.app\n",
        "services/ca/store/models.py": "from tsunagu.ca.domain import rules\n",
        "services/ca/domain/rules.py": "from tsunagu.idp.domain import x\n",
        "examples/bank/__init__.py": "from tsunagu.wallet import enroll\n",
    }
    for folder in ("libs", "services/ca", "services/idp"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    (tmp_path / "services/ca/__init__.py").write_text("")
    (tmp_path / "services/idp/__init__.py").write_text("")
    target = tmp_path / source
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(bad[source])
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "SERVICES", {"ca", "idp"})
    assert any(expected in problem for problem in _violations())
