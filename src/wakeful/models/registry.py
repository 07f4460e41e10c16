"""Turn a model spec from an agent file (``scripted:worker``) into a shared instance.

Specs are ``provider[:name]``. Providers register a factory; the runtime asks the
registry once per spec and shares the instance between all tasks using it, so a
provider can keep one connection pool and one rate limiter for everyone.

Remote providers come from ``wakeful.yaml``'s ``providers:`` section (``local:llama``
names the provider ``local`` and the model ``llama``); ``openai:MODEL`` and
``anthropic:MODEL`` work without any configuration, with the kind's defaults. All
models of one provider share one :class:`~wakeful.models.remote.Provider`: one client,
one concurrency limit, one rate limiter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from wakeful.errors import ConfigError
from wakeful.models.base import Model
from wakeful.models.config import ProviderConfig
from wakeful.models.remote import Provider
from wakeful.models.scripted import ScriptedModel

ModelFactory = Callable[[str, Path], Model]
"""(name after the colon, project scripts folder) -> model."""

BUILTIN_PROVIDERS = {"openai": ProviderConfig(kind="openai"),
                     "anthropic": ProviderConfig(kind="anthropic")}


def _scripted(name: str, scripts_dir: Path) -> Model:
    if not name:
        return ScriptedModel()
    for suffix in (".yaml", ".yml"):
        path = scripts_dir / f"{name}{suffix}"
        if path.is_file():
            return ScriptedModel.from_file(path, name=f"scripted:{name}")
    raise ConfigError(f"model 'scripted:{name}': no script file {scripts_dir / (name + '.yaml')}")


def make_provider(name: str, config: ProviderConfig) -> Provider:
    """Build a provider, reading its API key from the environment (and only there)."""
    api_key = os.environ.get(config.key_env) or None
    if api_key is None and config.api_key_required:
        raise ConfigError(
            f"provider {name!r}: no API key: set the environment variable {config.key_env} "
            "(or, for a local server that needs no key, set "
            f"providers.{name}.api_key_required: false in wakeful.yaml)")
    if config.kind == "anthropic":
        from wakeful.models.anthropic_provider import AnthropicProvider

        return AnthropicProvider(name, config, api_key)
    from wakeful.models.openai_provider import OpenAIProvider

    return OpenAIProvider(name, config, api_key)


class ModelRegistry:
    def __init__(self, scripts_dir: Path,
                 providers: Mapping[str, ProviderConfig] | None = None) -> None:
        self._scripts_dir = scripts_dir
        self._factories: dict[str, ModelFactory] = {"scripted": _scripted}
        self._instances: dict[str, Model] = {}
        self.provider_configs: dict[str, ProviderConfig] = {**BUILTIN_PROVIDERS,
                                                            **(providers or {})}
        self.providers: dict[str, Provider] = {}
        self.workers = 1  # live workers sharing each provider's limits
        for provider_name in self.provider_configs:
            self._factories[provider_name] = self._remote_factory(provider_name)

    def _remote_factory(self, provider_name: str) -> ModelFactory:
        def factory(model: str, _scripts_dir: Path) -> Model:
            if not model:
                raise ConfigError(f"model {provider_name!r}: name the model after the colon, "
                                  f"e.g. '{provider_name}:gpt-4o-mini'")
            return self.provider(provider_name).model(model)

        return factory

    def provider(self, name: str) -> Provider:
        """The shared provider ``name``, created on first use."""
        if name not in self.providers:
            self.providers[name] = make_provider(name, self.provider_configs[name])
            self.providers[name].limits.share(self.workers)
        return self.providers[name]

    def share_limits(self, workers: int) -> None:
        """``workers`` live workers share every provider's configured concurrency and
        rates: this process applies its part (see :class:`ProviderLimits`)."""
        self.workers = max(1, workers)
        for provider in self.providers.values():
            provider.limits.share(self.workers)

    def register_provider(self, provider: str, factory: ModelFactory) -> None:
        self._factories[provider] = factory

    def register(self, spec: str, model: Model) -> None:
        """Use ``model`` for ``spec`` (tests and embedding code bring their own)."""
        self._instances[spec] = model

    def get(self, spec: str) -> Model:
        if spec in self._instances:
            return self._instances[spec]
        provider, _, name = spec.partition(":")
        factory = self._factories.get(provider)
        if factory is None:
            known = ", ".join(sorted(self._factories))
            raise ConfigError(f"model {spec!r}: unknown provider {provider!r} (known: {known}; "
                              "add it under 'providers:' in wakeful.yaml)")
        model = factory(name, self._scripts_dir)
        self._instances[spec] = model
        return model

    async def aclose(self) -> None:
        for model in self._instances.values():
            await model.aclose()
        for provider in self.providers.values():
            await provider.aclose()
