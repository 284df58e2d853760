"""Maps the monorepo folders onto the ``tsunagu`` namespace.

``libs/<lib>`` is imported as ``tsunagu.<lib>``, ``services/<name>`` as ``tsunagu.<name>``
(``jlis-sync`` becomes ``jlis_sync``), ``sandbox/<x>`` as ``tsunagu.sandbox.<x>`` and
``clients/<x>`` as ``tsunagu.<x>``. Everything else lives in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
ROOTS = {"libs": "tsunagu", "services": "tsunagu", "clients": "tsunagu", "sandbox": "tsunagu.sandbox"}


def _mapping() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder, namespace in ROOTS.items():
        base = ROOT / folder
        if not base.is_dir():
            continue
        for top in sorted(p for p in base.iterdir() if (p / "__init__.py").is_file()):
            name = f"{namespace}.{top.name.replace('-', '_')}"
            package_dir[name] = f"{folder}/{top.name}"
            for init in sorted(top.rglob("__init__.py")):
                rel = init.parent.relative_to(top)
                packages.append(".".join([name, *rel.parts]) if rel.parts else name)
    return packages, package_dir


packages, package_dir = _mapping()
setup(packages=packages, package_dir=package_dir)
