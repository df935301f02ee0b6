"""Packaging: setup.cfg declares what the code imports, the licence it names is there, and the protocol
the code comments cite is the repository's own docs/protocol.md."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("interventions", "model_wrappers", "narrowgate", "narrowgate_tasks")
# Declared without an import: runtime tools and constraints, each explained in setup.cfg.
DECLARED_NOT_IMPORTED = {"accelerate", "filelock"}


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(folders) -> set[str]:
    modules = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules.add(node.module.split(".")[0])
    return modules


def test_dependencies_are_exactly_what_the_code_imports():
    declared = {
        normalise(re.split(r"[<>=!~ ;\[]", line.strip())[0])
        for line in setup_cfg()["options"]["install_requires"].strip().splitlines()
    }
    third_party = imported_modules(PACKAGES) - set(sys.stdlib_module_names) - set(PACKAGES)
    distributions = packages_distributions()
    imported = {normalise(distributions[module][0]) for module in third_party}
    assert imported - declared == set(), "imported but not declared in setup.cfg"
    assert declared - imported == DECLARED_NOT_IMPORTED, "declared in setup.cfg but never imported"


def test_license_file_matches_setup_cfg():
    assert setup_cfg()["metadata"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_protocol_citations_point_to_docs_protocol():
    protocol = (ROOT / "docs" / "protocol.md").read_text()
    sections = set(re.findall(r"^## (\d+)\.", protocol, flags=re.MULTILINE))
    cited = []
    folders = (*PACKAGES, "configs", "benchmarks", "tests")
    files = [ROOT / "README.md", ROOT / "setup.cfg", *(p for f in folders for p in (ROOT / f).rglob("*"))]
    for path in files:
        if path == Path(__file__) or path.suffix not in (".py", ".yaml", ".md", ".cfg"):
            continue
        text = path.read_text()
        assert "PROTOCOL" not in text, f"{path.relative_to(ROOT)} cites a PROTOCOL file that is not in the repository"
        cited += [(path, section) for section in re.findall(r"docs/protocol\.md §(\d+)", text)]
    assert cited, "no code comment cites docs/protocol.md"
    assert [(str(p.relative_to(ROOT)), s) for p, s in cited if s not in sections] == []
