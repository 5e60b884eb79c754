"""The layering of STYLE.md, checked by walking every import with ast."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"review", "rules", "expert_pool", "workers", "config", "tests", "migrations"}
#: The web and command-line boundary of review/: views and CLI may orchestrate across packages.
REVIEW_BOUNDARY = {
    "views",
    "api",
    "api_schemas",  # the API's schemas take the pool's enumerations (verdicts, notify modes)
    "web",
    "cli",
    "demo",
    "dashboard",
    "downloads",
    "monitoring",
    "app",
    "__init__",
}
RULES_MAY_IMPORT = {"jieba", "rjieba", "opencc", "ahocorasick", "ahocorasick_rs"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("rules"), ids=lambda p: str(p.relative_to(ROOT)))
def test_rules_is_pure(path: Path) -> None:
    allowed = set(sys.stdlib_module_names) | RULES_MAY_IMPORT | {"rules"}
    assert _imports(path) <= allowed, f"{path} imports {_imports(path) - allowed}"


def test_matching_is_pure() -> None:
    imports = _imports(ROOT / "expert_pool" / "matching.py")
    assert imports <= set(sys.stdlib_module_names), imports


@pytest.mark.parametrize("path", _modules("review"), ids=lambda p: str(p.relative_to(ROOT)))
def test_review_core_never_imports_the_pool_or_workers(path: Path) -> None:
    imports = _imports(path)
    assert "tests" not in imports
    if path.stem in REVIEW_BOUNDARY:
        if path.stem not in {"cli", "demo"}:
            assert "workers" not in imports, f"{path}: only the CLI may reach workers"
        return
    assert not imports & {"expert_pool", "workers"}, (
        f"{path} imports {imports & {'expert_pool', 'workers'}}"
    )


@pytest.mark.parametrize("path", _modules("expert_pool"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pool_never_imports_workers(path: Path) -> None:
    assert not _imports(path) & {"workers", "tests"}


def test_config_is_stdlib_only() -> None:
    assert _imports(ROOT / "config.py") <= set(sys.stdlib_module_names)


def test_the_test_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from review.db import db\nimport flask\n", encoding="utf-8")
    assert _imports(bad) == {"review", "flask"}


#: Video helpers that must stay free of the web and the database (the worker and the bench use
#: them directly): what each may import besides the standard library.
MEDIA_HELPERS = {
    "subtitles": {"review"},  # review.errors only
    "media": {"review", "werkzeug"},
    "ocr": {"review", "numpy", "rapidocr_onnxruntime"},
}


@pytest.mark.parametrize("module", sorted(MEDIA_HELPERS))
def test_media_helpers_need_no_app_or_database(module: str) -> None:
    path = ROOT / "review" / f"{module}.py"
    extra = _imports(path) - set(sys.stdlib_module_names)
    assert extra <= MEDIA_HELPERS[module], f"{path} imports {extra - MEDIA_HELPERS[module]}"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    ours = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("review")
    }
    assert ours <= {"review.errors", "review.subtitles"}, ours
