"""Prompt templates per (business, model) and per chain step, rendered in a Jinja2 sandbox.

Template variables are data: a value containing `{{ ... }}` is printed as
text, never evaluated, because Jinja only compiles template files and the
sandbox blocks attribute tricks inside them. Every template sees the
request's declared variables plus these built-ins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    UndefinedError,
    meta,
)
from jinja2.sandbox import SandboxedEnvironment

from relaychain.bus.errors import AgentError
from relaychain.schemas.config import AppConfig, BusinessConfig
from relaychain.schemas.errors import ErrorCode
from relaychain.schemas.events import ChatMessage

BUILTIN_VARIABLES = frozenset({"input", "context", "outputs", "business", "model"})
DEFAULT_TEMPLATE = "default"


TEMPLATE_RECHECK_S = 1.0
"""An edited template file is picked up within this long; Jinja would otherwise stat it on every render."""


class _RecheckingLoader(FileSystemLoader):
    """Jinja's file loader, asking the disk whether a template changed at most once per TEMPLATE_RECHECK_S."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        checked_at, fresh = time.monotonic(), True

        def recheck() -> bool:
            nonlocal checked_at, fresh
            now = time.monotonic()
            if now - checked_at >= TEMPLATE_RECHECK_S:
                checked_at, fresh = now, uptodate()
            return fresh

        return source, filename, recheck


class PromptLibrary:
    def __init__(self, config: AppConfig, base_dir: Path) -> None:
        self.config = config
        self.base_dir = base_dir
        self._env = SandboxedEnvironment(
            loader=_RecheckingLoader(str(base_dir)),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )

    def template_for(self, business: str, model: str) -> str:
        """The template file for this pair: the model's own, else the business default."""
        templates = self.business(business).templates
        name = templates.get(model) or templates.get(DEFAULT_TEMPLATE)
        if name is None:
            raise AgentError(
                ErrorCode.MISSING_TEMPLATE, f"business {business!r} has no template for model {model!r} and no default"
            )
        return name

    def business(self, business: str) -> BusinessConfig:
        config = self.config.businesses.get(business)
        if config is None:
            raise AgentError(
                ErrorCode.UNKNOWN_BUSINESS,
                f"unknown business {business!r}",
                details={"known": sorted(self.config.businesses)},
            )
        return config

    def render(self, business: str, model: str, variables: Mapping[str, Any]) -> tuple[ChatMessage, ...]:
        return self._messages(business, self.template_for(business, model), variables, model)

    def render_step(
        self, business: str, step: str, variables: Mapping[str, Any], model: str = ""
    ) -> tuple[ChatMessage, ...]:
        """The messages of a chain step (`opening` for `generate.opening`)."""
        for chain_step in self.business(business).chain:
            if chain_step.name == step:
                return self._messages(business, chain_step.template, variables, model)
        raise AgentError(ErrorCode.UNKNOWN_STEP, f"business {business!r} has no chain step {step!r}")

    def render_file(self, template: str, variables: Mapping[str, Any]) -> str:
        return self._render(template, variables)

    def variables_of(self, template: str) -> frozenset[str]:
        return _undeclared(self._env, template)

    def _messages(
        self, business: str, template: str, variables: Mapping[str, Any], model: str
    ) -> tuple[ChatMessage, ...]:
        scope = {**variables, "business": business, "model": model}
        messages = []
        system = self.business(business).system
        if system is not None:
            messages.append(ChatMessage(role="system", content=self._render(system, scope)))
        messages.append(ChatMessage(role="user", content=self._render(template, scope)))
        return tuple(messages)

    def _render(self, template: str, variables: Mapping[str, Any]) -> str:
        try:
            return self._env.get_template(template).render(**variables).strip()
        except UndefinedError as exc:
            raise AgentError(ErrorCode.MISSING_VARIABLE, f"template {template}: {exc.message}") from None
        except TemplateError as exc:
            raise AgentError(ErrorCode.TEMPLATE_ERROR, f"template {template}: {exc}") from None


@cache
def _undeclared(env: SandboxedEnvironment, template: str) -> frozenset[str]:
    """The variables `template` reads, those of the templates it includes (by a constant name) too."""
    return frozenset(_variables(env, template, set()))


def _variables(env: SandboxedEnvironment, template: str, seen: set[str]) -> set[str]:
    seen.add(template)
    assert env.loader is not None
    # Found as rendering finds it (TemplateNotFound when it is not there), never outside the config's folder.
    source, _, _ = env.loader.get_source(env, template)
    parsed = env.parse(source)
    names = set(meta.find_undeclared_variables(parsed))
    for included in meta.find_referenced_templates(parsed):
        if included is not None and included not in seen:
            names |= _variables(env, included, seen)
    return names
