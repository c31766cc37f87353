"""The built wheel: one import name (`relaychain`), installable next to the OpenAI Agents SDK (`agents`).

Both tests build the wheel with pip from this checkout; the second installs
it and the pinned `openai-agents` (from the package index, cached between
runs) into directories of their own and imports both in one interpreter
started outside the checkout, so nothing here can shadow either package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPENAI_AGENTS = "openai-agents==0.24.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "relaychain-tests" / OPENAI_AGENTS

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(600)]


# What `pip wheel .` reads; copied first, because setuptools leaves build/ and *.egg-info in the source tree.
SOURCES = ("pyproject.toml", "README.md", "relaychain", "agents", "bus", "schemas", "observability", "examples")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out)]
    subprocess.run([*pip_wheel, "."], check=True, cwd=source)
    [built] = out.glob("relaychain-*.whl")
    return built


def test_the_wheel_installs_one_top_level_name(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [top_level] = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        declared = archive.read(top_level).decode().split()
    packages = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert declared == ["relaychain"] and packages == {"relaychain"}, (declared, packages)
    # The folders kept at the top of the repository travel inside it, with their data.
    for path in ("relaychain/agents/router.py", "relaychain/bus/runtime.py", "relaychain/schemas/events.py"):
        assert path in names
    assert "relaychain/observability/setup.py" in names and "relaychain/defaults/config.yaml" in names
    specs = {n.rsplit("/", 1)[1] for n in names if n.startswith("relaychain/defaults/specs/")}
    assert specs == {p.name for p in (ROOT / "examples" / "cars" / "specs").iterdir()}, "the car spec sheets ship"


def test_relaychain_and_the_openai_agents_sdk_import_side_by_side(wheel: Path, tmp_path: Path) -> None:
    installed = tmp_path / "relaychain"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(installed), str(wheel)],
        check=True,
    )
    if not (CACHE / "agents" / "__init__.py").is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(CACHE), OPENAI_AGENTS], check=True
        )
    script = """
import agents, relaychain, relaychain.agents.router
from agents import Agent, Runner
from relaychain import App, Client
from relaychain.agents.router import RouterAgent
print(agents.__file__)
print(relaychain.__file__)
"""
    # The wheel's directory first, then the SDK's: the shared environment supplies relaychain's dependencies.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": f"{installed}{os.pathsep}{CACHE}"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    sdk, ours = result.stdout.split()
    assert Path(sdk).is_relative_to(CACHE) and Path(ours).is_relative_to(installed), result.stdout
