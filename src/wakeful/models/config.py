"""Provider settings as users write them in ``wakeful.yaml`` under ``providers:``.

A provider is one endpoint (OpenAI, OpenRouter, vLLM, llama.cpp, Ollama, Anthropic...)
with its own limits. Every agent whose model names the provider shares its connection
pool, its concurrency limit and its rate limiter, which is what keeps many agents
within what the endpoint allows. API keys are never written here: the config names
the environment variable that holds the key, so the key never reaches the project
files, the store or the event log.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KIND_DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ModelPrice(BaseModel):
    """What a model costs, in the user's currency per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


class ProviderConfig(BaseModel):
    """One endpoint: where it is, how to authenticate, and how hard to push it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["openai", "anthropic"] = "openai"
    base_url: str | None = None  # None: the SDK's default (or OPENAI_BASE_URL)
    # The NAME of the environment variable holding the key (default per kind).
    api_key_env: str | None = Field(default=None, pattern=_ENV_NAME)
    # Local servers (llama.cpp, Ollama, vLLM) often need no key: set this to false.
    api_key_required: bool = True
    concurrency: int = Field(default=64, ge=1, le=100_000)
    requests_per_minute: float | None = Field(default=None, gt=0)
    tokens_per_minute: float | None = Field(default=None, gt=0)
    # How many seconds' worth of the per-minute rates may be spent in one burst.
    burst_s: float = Field(default=1.0, gt=0)
    # Longest wait for a response to start, and between two streamed chunks.
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=100)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=30.0, ge=0)
    # A Retry-After longer than this is not waited for: the call fails at once.
    max_retry_after_s: float = Field(default=120.0, ge=0)
    # The HTTP stack under the SDK: aiohttp (default; about half the CPU per request
    # of httpx under load) or httpx.
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    # Reuse connections between requests. llama.cpp's server closes the connection after
    # each streamed reply while announcing keep-alive, so the next request on it fails
    # (retried at once, but wasted): ``false`` sends ``Connection: close``, one fresh
    # connection per request (a fraction of a millisecond on loopback).
    keep_alive: bool = True
    stream: bool = True
    # Ask for token usage in streamed replies (OpenAI ``stream_options``).
    stream_usage: bool = True
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    # Further sampling parameters, sent only when set (OpenAI-compatible endpoints).
    top_p: float | None = Field(default=None, gt=0, le=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    stop: list[str] | None = Field(default=None, max_length=16)
    seed: int | None = None
    # Server-specific fields merged into every request body as they are (e.g. llama.cpp's
    # ``repeat_penalty``); Wakeful's own fields (model, messages, tools, stream) win.
    extra_body: dict[str, Any] = Field(default_factory=dict)
    # How tools reach the model. ``native``: the API's tool calling. ``json_schema``: for
    # models without it, the reply is a JSON object constrained by a schema built from the
    # granted tools (a call to one of them, or a final answer), turned back into ordinary
    # tool calls. ``auto``: ``json_schema`` when the server says its chat template has no
    # tool calling (llama.cpp's ``/props``), else ``native``.
    tool_calls: Literal["native", "json_schema", "auto"] = "native"
    # json_schema mode: after this many tool calls in a row, the schema allows only a
    # final answer (a small model otherwise calls tools in a circle). None: no limit.
    max_tool_rounds: int | None = Field(default=None, ge=1)
    # json_schema mode: the longest free-text tool argument, in characters, so that a
    # model repeating itself still closes its JSON before max_output_tokens.
    max_argument_chars: int = Field(default=1000, ge=1)
    # Price per model name; "*" applies to models not listed.
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _fits_the_kind(self) -> ProviderConfig:
        """Options the Messages API has no field for are refused, not silently dropped."""
        if self.kind == "anthropic":
            unsupported = [name for name in ("frequency_penalty", "presence_penalty", "seed")
                           if getattr(self, name) is not None]
            if self.tool_calls != "native":
                unsupported.append(f"tool_calls: {self.tool_calls}")
            if unsupported:
                raise ValueError(f"not available with kind: anthropic: "
                                 f"{', '.join(unsupported)}")
        return self

    @property
    def key_env(self) -> str:
        return self.api_key_env or KIND_DEFAULT_KEY_ENV[self.kind]

    def price(self, model: str) -> ModelPrice | None:
        return self.prices.get(model) or self.prices.get("*")
