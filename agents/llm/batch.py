"""Decoding several chat jobs as one left-padded batch with `transformers`, each sequence on its own terms.

`model.generate` decodes the batch; this module makes each row behave as if
it ran alone: its own length limit, deadline and cancellation (a stopping
criterion that answers per row), its own JSON grammar (one xgrammar matcher
per row), a repetition penalty that ignores the other rows' padding, and its
own streamed text. Runs on the model's worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from relaychain.agents.hf_imports import TRANSFORMERS_LOCK
from relaychain.agents.llm.base import FinishReason

__all__ = ["Outcome", "Row", "decode_batch"]


@dataclass(frozen=True)
class Row:
    """One job: its templated prompt and the rules its sequence follows."""

    prompt_ids: list[int]
    max_tokens: int
    deadline: float
    stop: threading.Event
    emit: Callable[[str], None] | None = None
    grammar: Any = None
    """An xgrammar `CompiledGrammar`, or None for free text."""


@dataclass(frozen=True)
class Outcome:
    text: str
    input_tokens: int
    output_tokens: int
    finish_reason: FinishReason
    timed_out: bool


def decode_batch(
    model: Any,
    tokenizer: Any,
    rows: list[Row],
    *,
    temperature: float | None,
    repetition_penalty: float | None,
) -> list[Outcome]:
    """Decode `rows` together; greedy when `temperature` is None."""
    import torch

    with TRANSFORMERS_LOCK:
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

    eos = _eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    width = max(len(row.prompt_ids) for row in rows)
    starts = [width - len(row.prompt_ids) for row in rows]
    input_ids = torch.tensor([[pad] * start + row.prompt_ids for start, row in zip(starts, rows, strict=True)])
    attention_mask = torch.tensor(
        [[0] * start + [1] * len(row.prompt_ids) for start, row in zip(starts, rows, strict=True)]
    )
    progress = _Progress(rows, tokenizer, frozenset(eos))
    processors: list[Any] = []
    if repetition_penalty is not None:
        processors.append(_RowRepetitionPenalty(repetition_penalty, starts))
    if any(row.grammar is not None for row in rows):
        processors.append(_RowGrammars(rows, model.config.vocab_size, progress))
    generation = GenerationConfig(
        max_new_tokens=max(row.max_tokens for row in rows),
        do_sample=temperature is not None,
        temperature=temperature,
        top_p=None,
        top_k=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    with torch.inference_mode():
        model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation,
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([progress]),
        )
    return progress.outcomes()


class _Progress:
    """Each row's tokens so far and why it ended; as a stopping criterion, it ends rows one by one."""

    def __init__(self, rows: list[Row], tokenizer: Any, eos: frozenset[int]) -> None:
        self.rows = rows
        self.tokenizer = tokenizer
        self.eos = eos
        self.generated: list[list[int]] = [[] for _ in rows]
        self.finish: list[FinishReason | None] = [None] * len(rows)
        self.timed_out = [False] * len(rows)
        self.sent = [""] * len(rows)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        now = time.monotonic()
        for i, token in enumerate(input_ids[:, -1].tolist()):
            if self.finish[i] is not None:
                continue
            row, ids = self.rows[i], self.generated[i]
            ids.append(token)
            if token in self.eos:
                self.finish[i] = "stop"
            elif len(ids) >= row.max_tokens:
                self.finish[i] = "length"
            elif row.stop.is_set():
                self.finish[i] = "cancelled"
            elif now >= row.deadline:
                self.finish[i], self.timed_out[i] = "length", True
            if row.emit is not None:
                self._stream(i, row.emit)
        return torch.tensor([reason is not None for reason in self.finish], dtype=torch.bool)

    def _stream(self, i: int, emit: Callable[[str], None]) -> None:
        text = self.text(i)
        # A token can end inside a multi-byte character: wait for the rest before sending it.
        if len(text) > len(self.sent[i]) and not text.endswith("\ufffd"):
            emit(text[len(self.sent[i]) :])
            self.sent[i] = text

    def text(self, i: int) -> str:
        text: str = self.tokenizer.decode(self.generated[i], skip_special_tokens=True)
        return text

    def outcomes(self) -> list[Outcome]:
        return [
            Outcome(
                text=self.text(i),
                input_tokens=len(row.prompt_ids),
                output_tokens=len(self.generated[i]),
                finish_reason=self.finish[i] or "length",
                timed_out=self.timed_out[i],
            )
            for i, row in enumerate(self.rows)
        ]


class _RowRepetitionPenalty:
    """transformers' repetition penalty, applied to each row's own tokens only (left padding is not text)."""

    def __init__(self, penalty: float, starts: list[int]) -> None:
        self.penalty = penalty
        self.starts = starts

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for i, start in enumerate(self.starts):
            ids = input_ids[i, start:]
            score = torch.gather(scores[i], 0, ids)
            scores[i] = scores[i].scatter(0, ids, torch.where(score < 0, score * self.penalty, score / self.penalty))
        return scores


class _RowGrammars:
    """One xgrammar matcher per constrained row; it accepts the row's own tokens and masks only that row."""

    def __init__(self, rows: list[Row], vocab_size: int, progress: _Progress) -> None:
        import xgrammar

        self.matchers = [None if row.grammar is None else xgrammar.GrammarMatcher(row.grammar) for row in rows]
        self.accepted = [0] * len(rows)
        self.bitmask = xgrammar.allocate_token_bitmask(len(rows), vocab_size)
        self.progress = progress

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import xgrammar

        xgrammar.reset_token_bitmask(self.bitmask)
        for i, matcher in enumerate(self.matchers):
            if matcher is None:
                continue
            generated = self.progress.generated[i]
            for token in generated[self.accepted[i] :]:
                matcher.accept_token(token)
            self.accepted[i] = len(generated)
            if self.progress.finish[i] is None and not matcher.is_terminated():
                matcher.fill_next_token_bitmask(self.bitmask, i)
        xgrammar.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device))
        return scores


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
