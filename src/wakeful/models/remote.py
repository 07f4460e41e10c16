"""What every remote provider shares: limits, retries, timeouts, accounting.

A :class:`Provider` is one configured endpoint (its SDK clients and their connections,
one :class:`~wakeful.models.limits.ProviderLimits`); a :class:`RemoteModel` is one
model name on it. Subclasses only translate: :meth:`RemoteModel._attempt` makes ONE
request with the SDK and yields stream events; this class wraps it in the concurrency
slot and rate limits, the retry loop and the token accounting, so OpenAI and Anthropic
behave the same way under load and failure. The per-call timeout is the HTTP client's
(see :class:`ClientPool`), mapped by :func:`~wakeful.models.retry.classify`.
"""

from __future__ import annotations

import abc
import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2

from wakeful.errors import ModelError
from wakeful.models.base import (
    Completed,
    Message,
    Model,
    ModelResponse,
    StreamEvent,
    ToolSpec,
    Usage,
)
from wakeful.models.calls import report
from wakeful.models.config import ProviderConfig
from wakeful.models.limits import ProviderLimits
from wakeful.models.retry import Failure, RetryPolicy, classify

THROTTLE_REPORT_S = 0.05  # limiter waits shorter than this are not worth an event
_LOOPBACK = ("://127.", "://localhost", "://[::1]")


class ProviderError(ModelError):
    """A provider call that failed for good (after retries, or not retryable).

    ``retryable`` tells the task's restart policy whether trying the whole task again
    later could help (a 500 storm may pass; a wrong API key will not).
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None,
                 attempts: int = 1) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.attempts = attempts


def estimate_tokens(messages: list[Message], tools: list[ToolSpec]) -> int:
    """A rough prompt size (4 characters a token) for rate limiting before a call."""
    chars = sum(len(m.content or "") + sum(len(c.arguments) + len(c.name)
                                           for c in m.tool_calls) for m in messages)
    chars += sum(len(t.description) + len(str(t.parameters)) for t in tools)
    return max(1, chars // 4)


HTTPX_SHARD_CONNECTIONS = 8  # connections per SDK client on httpx; see ClientPool


class ClientPool:
    """The SDK clients of one provider, leased one request at a time.

    On ``http_client: aiohttp`` (the default; both SDKs support it) one client holds
    the provider's whole connection pool. On ``httpx``, whose pool scans every
    connection it holds each time a request starts or ends (O(n) per request, which
    dominates the CPU at a thousand agents), the pool is split over several clients of
    ``HTTPX_SHARD_CONNECTIONS`` connections each, leased least-loaded first and created
    only when all are full; the provider's semaphore still bounds the total. Clients
    share one TLS context (building one reads the CA bundle: ~30 ms).
    """

    def __init__(self, make: Callable[[httpx2.AsyncClient], Any], config: ProviderConfig,
                 aiohttp_client: Callable[..., httpx2.AsyncClient]) -> None:
        self._make = make
        self._config = config
        self._aiohttp_client = aiohttp_client
        self.shard_connections = (config.concurrency if config.http_client == "aiohttp"
                                  else HTTPX_SHARD_CONNECTIONS)
        self.clients: list[Any] = []
        self._load: list[int] = []
        self._ssl: ssl.SSLContext | None = None

    def _http_client(self) -> httpx2.AsyncClient:
        config = self._config
        if self._ssl is None:
            self._ssl = httpx2.create_ssl_context()
        loopback = any(marker in (config.base_url or "") for marker in _LOOPBACK)
        options: dict[str, Any] = {
            "verify": self._ssl,
            "limits": httpx2.Limits(max_connections=self.shard_connections,
                                    max_keepalive_connections=self.shard_connections),
            # timeout_s bounds every wait on the network: for the response to start and
            # between two streamed chunks (a read), not a long healthy stream as a whole.
            "timeout": httpx2.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)),
            "follow_redirects": True,
            "trust_env": not loopback,  # an environment proxy never applies to loopback
        }
        if not config.keep_alive:
            options["headers"] = {"Connection": "close"}
        if config.http_client == "aiohttp":
            return self._aiohttp_client(**options)
        return httpx2.AsyncClient(**options)

    @contextmanager
    def lease(self) -> Iterator[Any]:
        """An SDK client with a free connection, for the length of one request."""
        load = self._load
        index = min(range(len(load)), key=load.__getitem__) if load else -1
        if index < 0 or load[index] >= self.shard_connections:
            self.clients.append(self._make(self._http_client()))
            load.append(0)
            index = len(load) - 1
        load[index] += 1
        try:
            yield self.clients[index]
        finally:
            load[index] -= 1

    async def aclose(self) -> None:
        clients, self.clients, self._load = self.clients, [], []
        for client in clients:
            await client.close()


class Provider(abc.ABC):
    """One endpoint and everything its models share."""

    def __init__(self, name: str, config: ProviderConfig, api_key: str | None) -> None:
        self.name = name
        self.config = config
        self._api_key = api_key
        self.limits = ProviderLimits(
            concurrency=config.concurrency, requests_per_minute=config.requests_per_minute,
            tokens_per_minute=config.tokens_per_minute, burst_s=config.burst_s)
        self.retry = RetryPolicy(max_retries=config.max_retries,
                                 backoff_initial_s=config.backoff_initial_s,
                                 backoff_max_s=config.backoff_max_s,
                                 max_retry_after_s=config.max_retry_after_s)
        self.clients = ClientPool(lambda http: self._make_client(api_key, http), config,
                                  self._aiohttp_client_class())

    @property
    def where(self) -> str:
        return self.config.base_url or f"the default {self.config.kind} endpoint"

    def redact(self, text: str) -> str:
        """Never let the API key into a message, an event or the store."""
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "***")
        return text

    @abc.abstractmethod
    def _make_client(self, api_key: str | None, http_client: httpx2.AsyncClient) -> Any:
        """Create one SDK async client (``max_retries=0``: retries are ours)."""

    @abc.abstractmethod
    def _aiohttp_client_class(self) -> Callable[..., httpx2.AsyncClient]:
        """The SDK's own aiohttp-backed HTTP client (its ``DefaultAioHttpClient``)."""

    @abc.abstractmethod
    def model(self, model: str) -> RemoteModel: ...

    async def aclose(self) -> None:
        await self.clients.aclose()


class RemoteModel(Model):
    def __init__(self, provider: Provider, model: str) -> None:
        self.provider = provider
        self.model = model
        self.name = f"{provider.name}:{model}"

    @abc.abstractmethod
    def _attempt(self, messages: list[Message], tools: list[ToolSpec], *, stream: bool
                 ) -> AsyncIterator[StreamEvent]:
        """Make one request; yield deltas, then one :class:`Completed`.

        Implementations lease a client from ``provider.clients`` for the request and
        close the response however the iteration ends. Every wait on the network is
        bounded by ``timeout_s`` through the HTTP client's own timeouts (an
        :func:`asyncio.timeout` per streamed chunk cost more than the rest of this
        class together).
        """

    async def complete(self, messages: list[Message], tools: list[ToolSpec]) -> ModelResponse:
        async for event in self._call(messages, tools, stream=False):
            if isinstance(event, Completed):
                return event.response
        raise ModelError(f"model {self.name!r}: no reply")  # pragma: no cover - _call ensures

    async def stream(self, messages: list[Message], tools: list[ToolSpec]
                     ) -> AsyncIterator[StreamEvent]:
        async for event in self._call(messages, tools, stream=self.provider.config.stream):
            yield event

    async def _call(self, messages: list[Message], tools: list[ToolSpec], *, stream: bool
                    ) -> AsyncIterator[StreamEvent]:
        provider = self.provider
        policy = provider.retry
        # A prompt-size estimate is needed only to reserve tokens per minute up front.
        estimate = (estimate_tokens(messages, tools) + (provider.config.max_output_tokens or 0)
                    if provider.limits.tokens is not None else 0)
        began = time.perf_counter()
        queued = 0.0
        attempts = 0  # requests made
        counted = 0  # those that count against max_retries
        free_retry = True  # one dropped connection is retried at once, not counted
        while True:
            attempts += 1
            counted += 1
            yielded = False
            try:
                async with provider.limits.slot(estimate) as waited:
                    queued += waited
                    if waited >= THROTTLE_REPORT_S:
                        report("model.throttled", model=self.name, waited_s=round(waited, 3),
                               in_flight=provider.limits.in_flight)
                    started = time.perf_counter()
                    first: float | None = None
                    async for event in self._attempt(messages, tools, stream=stream):
                        if isinstance(event, Completed):
                            done = time.perf_counter()
                            info: dict[str, Any] = {
                                "configured_model": self.name,
                                "latency_ms": round((done - started) * 1000, 3),
                                "queued_ms": round(queued * 1000, 3),
                                "total_ms": round((done - began) * 1000, 3),
                                "attempts": attempts,
                                "truncated": event.response.truncated}
                            if first is not None:
                                info["first_token_ms"] = round((first - started) * 1000, 3)
                            event = Completed(self._account(event.response, messages, tools,
                                                            estimate, info))
                        elif first is None:
                            first = time.perf_counter()
                        yield event
                        yielded = True
                return
            except ModelError:
                raise
            except Exception as exc:
                failure = classify(exc, provider.config.timeout_s)
                if failure.dropped and free_retry and not yielded:
                    free_retry = False
                    counted -= 1
                    report("model.retry", model=self.name, attempt=attempts,
                           max_retries=policy.max_retries, delay_s=0.0,
                           error=provider.redact(failure.description), status=None,
                           retry_after_s=None, restarted_stream=False, counted=False)
                    continue
                await self._before_retry(failure, counted, policy, partial=yielded,
                                         attempts=attempts)

    async def _before_retry(self, failure: Failure, attempt: int, policy: RetryPolicy,
                            *, partial: bool, attempts: int | None = None) -> None:
        """Raise if this failure is final; otherwise report it and wait.

        ``attempt`` counts against ``max_retries``; ``attempts`` (default: the same) is
        every request made, including a free retry after a dropped connection.
        """
        provider = self.provider
        made = attempts or attempt
        description = provider.redact(failure.description)
        where = f"model {self.name!r} at {provider.where}"
        if not failure.retryable:
            raise ProviderError(f"{where}: {description} (not retried)", retryable=False,
                                status=failure.status, attempts=made)
        if attempt > policy.max_retries:
            raise ProviderError(
                f"{where}: gave up after {made} attempts ({policy.max_retries} retries, "
                f"max_retries): last error: {description}",
                retryable=True, status=failure.status, attempts=made)
        if failure.retry_after is not None and failure.retry_after > policy.max_retry_after_s:
            raise ProviderError(
                f"{where}: {description}; the server asks to wait {failure.retry_after:g} s, "
                f"more than max_retry_after_s ({policy.max_retry_after_s:g} s)",
                retryable=True, status=failure.status, attempts=made)
        delay = policy.delay(attempt, failure.retry_after)
        if failure.status == 429:
            provider.limits.hold(delay)
        report("model.retry", model=self.name, attempt=made,
               max_retries=policy.max_retries, delay_s=round(delay, 3), error=description,
               status=failure.status, retry_after_s=failure.retry_after,
               restarted_stream=partial)
        await asyncio.sleep(delay)

    def _account(self, response: ModelResponse, messages: list[Message],
                 tools: list[ToolSpec], estimate: int,
                 info: dict[str, Any] | None = None) -> ModelResponse:
        """Fill in usage the server did not report, settle the token bucket, price it."""
        usage = response.usage
        if usage.input_tokens == 0 and usage.output_tokens == 0:
            text = (response.message.content or "") + "".join(
                c.arguments for c in response.message.tool_calls)
            usage = Usage(input_tokens=estimate or estimate_tokens(messages, tools),
                          output_tokens=max(1, len(text) // 4))
        self.provider.limits.settle(estimate, usage.input_tokens + usage.output_tokens)
        price = self.provider.config.price(self.model)
        cost = price.cost(usage.input_tokens, usage.output_tokens) if price else None
        return ModelResponse(message=response.message, usage=usage,
                             finish_reason=response.finish_reason,
                             model=response.model or self.name, cost=cost,
                             call_info={**response.call_info, **(info or {})})
