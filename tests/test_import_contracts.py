"""The app graph points one way (issue 10, decision 0020): doors → billing's services →
promotions' rules → the ground floor. The contracts are in pyproject.toml (`[tool.importlinter]`)
and checked by import-linter here, so CI runs them with the suite."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APPS = ("portal", "billing", "promotions")


def contracts() -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def floors() -> dict[str, list[str]]:
    c = contracts()
    return {"ground": c["ground"]["source_modules"], "promotions": c["promotions"]["source_modules"],
            "services": c["services"]["source_modules"], "doors": c["services"]["forbidden_modules"]}


def lint(root: Path) -> subprocess.CompletedProcess:
    lint_imports = Path(sys.executable).parent / "lint-imports"  # import-linter's command, in the venv
    return subprocess.run([str(lint_imports), "--no-cache"], cwd=root,
                          capture_output=True, text=True, timeout=120)


def test_the_import_contracts_are_kept():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_every_module_of_the_apps_stands_on_one_floor():
    named = floors()
    unplaced, twice = [], []
    for app in APPS:
        for path in (REPO / app).rglob("*.py"):
            if "migrations" in path.parts or path.parent == REPO / app and path.name == "__init__.py":
                continue
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            on = [floor for floor, modules in named.items()
                  if any(module == m or module.startswith(m + ".") for m in modules)]
            if not on:
                unplaced.append(module)
            elif len(on) > 1:
                twice.append((module, on))
    assert not unplaced, f"put these modules on a floor in pyproject.toml [tool.importlinter]: {unplaced}"
    assert not twice, twice
    # each contract forbids every floor above its own
    c = contracts()
    assert set(c["ground"]["forbidden_modules"]) == {*named["promotions"], *named["services"], *named["doors"]}
    assert set(c["promotions"]["forbidden_modules"]) == {*named["services"], *named["doors"]}


def test_an_import_that_points_up_breaks_the_contracts(tmp_path):
    # a copy of the apps where the ledger (ground floor) imports a door
    for app in APPS:
        shutil.copytree(REPO / app, tmp_path / app, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    ledger = tmp_path / "billing" / "ledger.py"
    ledger.write_text(ledger.read_text() + "\n\ndef _up():\n    from billing import api  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "The ground floor imports nothing above it BROKEN" in result.stdout
    assert "billing.ledger -> billing.api" in result.stdout
