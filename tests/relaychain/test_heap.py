"""Once the agents are warm, start-up's objects leave the collector's passes and young passes are rarer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_tuning_collects_start_up_garbage_then_freezes_once() -> None:
    out = run(
        """
        import gc
        from relaychain.heap import tune_garbage_collector

        class Node:
            pass

        cycle = Node(); cycle.other = Node(); cycle.other.other = cycle
        collected = []
        gc.callbacks.append(lambda phase, info: phase == "stop" and collected.append(info["collected"]))
        del cycle
        tune_garbage_collector()
        frozen = gc.get_freeze_count()
        tune_garbage_collector()
        print(sum(collected) >= 2, frozen > 0, gc.get_freeze_count() == frozen, gc.get_threshold()[0] >= 10_000)
        """
    )
    assert out == "True True True True"


def test_an_app_tunes_the_collector_after_warm_up_unless_told_not_to(tmp_path: Path) -> None:
    code = """
        import asyncio, gc
        from relaychain import App, load_settings

        async def main():
            settings = load_settings(data_dir={data_dir!r}, runtime={{"tune_gc": {freeze}}})
            async with App(settings, builtin=["router"]):
                print(gc.get_freeze_count() > 0)

        asyncio.run(main())
        """
    assert run(code.format(data_dir=str(tmp_path / "on"), freeze=True)) == "True"
    assert run(code.format(data_dir=str(tmp_path / "off"), freeze=False)) == "False"
