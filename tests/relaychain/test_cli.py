"""The CLI as a user meets it: exit codes, one line per expected failure, `-v` tracebacks, `--json`, `--version`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from relaychain.cli import main
from relaychain.output import amount, money
from tests.support.instant_model import (
    INSTANT_API_KEY_ENV,
    instant_model,
    script_instant_replies,
    write_instant_config,
)
from tests.support.openai_server import OpenAITestServer, Reply

BUSINESS = "ops_push"
VARS = ["--var", "campaign=Double 11", "--var", "audience=everyone"]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        script_instant_replies(server, [BUSINESS])
        monkeypatch.setenv("RELAYCHAIN_CONFIG", str(write_instant_config(tmp_path, server.base_url, [BUSINESS])))
        monkeypatch.setenv("RELAYCHAIN_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv(INSTANT_API_KEY_ENV, "test")
        yield server


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def relaychain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command in its own process, as a shell runs it (tracebacks would land on the real stderr)."""
    command = [sys.executable, "-m", "relaychain.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=os.environ | (env or {}))


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.split()[-1] == version("relaychain")


# --- run: 0 on a response, 1 on any other answer, one line on stderr ---------


def test_run_answers_and_exits_0(server: OpenAITestServer) -> None:
    result = invoke("run", "--business", BUSINESS, "--input", "Boots on sale", *VARS)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert f"== {BUSINESS} on {instant_model(BUSINESS)}" in result.stdout
    # 40 input and 20 output tokens at 0.50 / 1.50 USD per million: amounts fixed-point, never 3.0E-7.
    assert "0.00005000 USD" in result.stdout and "E-" not in result.stdout


def test_run_with_an_unknown_business_exits_1_with_one_line_on_stderr(server: OpenAITestServer) -> None:
    result = invoke("run", "--business", "nope", "--input", "hi")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error unknown_business from router: unknown business 'nope'")
    assert BUSINESS in line  # the known businesses, on the same line


def test_run_with_a_missing_variable_exits_1(server: OpenAITestServer) -> None:
    result = invoke("run", "--business", BUSINESS, "--input", "hi", "--json")
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error ")
    assert json.loads(result.stdout)["type"] == "error"


def test_a_blocked_request_exits_1(server: OpenAITestServer) -> None:
    result = invoke("run", "--business", BUSINESS, "--input", "click this bomb deal now", *VARS)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["blocked at input moderation: categories violence"]


def test_a_timeout_is_one_line_and_exit_1(server: OpenAITestServer) -> None:
    server.script(instant_model(BUSINESS), Reply(text="{}", delay_s=2.0))
    result = invoke("run", "--business", BUSINESS, "--input", "slow", "--timeout", "0.3", *VARS)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: no answer for request "
        + result.stderr.split("request ")[1].split()[0]
        + " within 0.3s: is an agent consuming the requests topic?"
    ]


# --- usage and config errors: exit 2, one line; -v shows the traceback ------


def test_a_bad_bus_url_is_a_config_error() -> None:
    done = relaychain("publish", "--bus", "rabbit://localhost", "-", env={"RELAYCHAIN_DATA_DIR": "/tmp"})
    assert done.returncode == 2
    assert done.stderr == "Error: unsupported bus URL 'rabbit://localhost': use memory:// or kafka://host:port\n"

    done = relaychain("publish", "--bus", "kafka://", "-", env={"RELAYCHAIN_DATA_DIR": "/tmp"})
    assert done.returncode == 2 and done.stderr.startswith("Error: bad bus URL 'kafka://'")


def test_a_bad_config_exits_2_and_verbose_shows_the_traceback(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: [")
    done = relaychain("--config", str(config), "costs")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(f"Error: bad config: {config}: not valid YAML")

    verbose = relaychain("-v", "--config", str(config), "costs")
    assert verbose.returncode == 2
    assert verbose.stderr.startswith("Traceback") and verbose.stderr.splitlines()[-1] == done.stderr.strip()


def test_a_usage_error_exits_2() -> None:
    assert invoke("tokens", "hello").exit_code == 2  # neither --model nor --encoding


# --- --json and one money format ---------------------------------------------


def test_amounts_are_fixed_point_everywhere() -> None:
    assert amount(Decimal("3.0E-7")) == "0.00000030"
    assert amount(Decimal("0E-8")) == "0.00000000"
    assert amount(1.5e-05) == "0.00001500"
    assert money(Decimal("12.5"), "CNY") == "12.50000000 CNY"


def test_tokens_prints_the_cost_fixed_point_and_as_json(server: OpenAITestServer) -> None:
    model = instant_model(BUSINESS)
    text = invoke("tokens", "--model", model, "hi")
    assert text.exit_code == 0, text.output
    assert "input cost: 0.00000050 USD (0.50 USD per million input tokens)" in text.stdout

    as_json = invoke("tokens", "--model", model, "hi", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == {
        "model": model,
        "tokenizer": "tiktoken:cl100k_base",
        "ids": [6151],
        "count": 1,
        "pieces": ["hi"],
        "input_cost": {"amount": "0.00000050", "currency": "USD"},
    }


def test_costs_and_trace_as_json_after_a_run(server: OpenAITestServer) -> None:
    run = invoke("run", "--business", BUSINESS, "--input", "Boots on sale", *VARS, "--json")
    assert run.exit_code == 0, run.output
    request_id = json.loads(run.stdout)["request_id"]

    costs = invoke("costs", "--json")
    assert costs.exit_code == 0, costs.output
    document = json.loads(costs.stdout)
    (row,) = document["rows"]
    assert (row["business"], row["model"], row["calls"]) == (BUSINESS, instant_model(BUSINESS), 1)
    assert (row["input_cost"], row["output_cost"], row["cost"], row["currency"]) == (
        "0.00002000",
        "0.00003000",
        "0.00005000",
        "USD",
    )
    assert document["totals"] == [
        {
            "currency": "USD",
            "calls": 1,
            "input_tokens": 40,
            "output_tokens": 20,
            "input_cost": "0.00002000",
            "output_cost": "0.00003000",
            "cost": "0.00005000",
        }
    ]

    trace = invoke("trace", request_id, "--json")
    assert trace.exit_code == 0, trace.output
    spans = json.loads(trace.stdout)
    assert "router request" in {span["name"] for span in spans}
    assert invoke("trace", "no-such-request").exit_code == 1


def test_costs_json_with_no_ledger_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAYCHAIN_DATA_DIR", str(tmp_path))
    result = invoke("costs", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"rows": [], "totals": [], "unbilled": 0}


# --- index: only what is inside the folder; exit 1 when anything was left out ---


def test_index_of_a_folder_with_nothing_to_index_exits_1_before_loading_a_model(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.docx").write_text("not a format we read")
    (docs / "x.txt").symlink_to("/etc/passwd")
    done = relaychain("index", str(docs), "--index", "empty", env={"RELAYCHAIN_DATA_DIR": str(tmp_path / "data")})
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "  failed x.txt: skipped: a link to /etc/passwd, outside the folder",
        f"Error: {docs} holds no pdf, md or txt file to index",
    ]
    assert not (tmp_path / "data" / "indexes" / "empty").exists()


@pytest.mark.slow
def test_index_skips_a_link_to_etc_passwd_exits_1_and_search_never_returns_it(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "car.md").write_text("# Aurora X7\n\nBattery: 90 kWh. Range: 520 km WLTP.\n")
    (docs / "x.txt").symlink_to("/etc/passwd")
    env = {"RELAYCHAIN_DATA_DIR": str(tmp_path / "data")}

    indexed = relaychain("index", str(docs), "--index", "cars", "--json", env=env)
    assert indexed.returncode == 1, indexed.stderr
    report = json.loads(indexed.stdout)
    assert report["indexed"] == ["car.md"]
    assert report["failed"] == {"x.txt": "skipped: a link to /etc/passwd, outside the folder"}

    found = relaychain("search", "cars", "root user shell login", "-k", "5", "--json", env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert [hit["source"] for hit in hits] == ["car.md"]
    assert not any("root:" in hit["text"] for hit in hits)
