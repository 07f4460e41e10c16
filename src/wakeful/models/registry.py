"""Turn a model spec from an agent file (``scripted:worker``) into a shared instance.

Specs are ``provider[:name]``. Providers register a factory; the runtime asks the
registry once per spec and shares the instance between all tasks using it, so a
provider can keep one connection pool and one rate limiter for everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from wakeful.errors import ConfigError
from wakeful.models.base import Model
from wakeful.models.scripted import ScriptedModel

ModelFactory = Callable[[str, Path], Model]
"""(name after the colon, project scripts folder) -> model."""


def _scripted(name: str, scripts_dir: Path) -> Model:
    if not name:
        return ScriptedModel()
    for suffix in (".yaml", ".yml"):
        path = scripts_dir / f"{name}{suffix}"
        if path.is_file():
            return ScriptedModel.from_file(path, name=f"scripted:{name}")
    raise ConfigError(f"model 'scripted:{name}': no script file {scripts_dir / (name + '.yaml')}")


class ModelRegistry:
    def __init__(self, scripts_dir: Path) -> None:
        self._scripts_dir = scripts_dir
        self._factories: dict[str, ModelFactory] = {"scripted": _scripted}
        self._instances: dict[str, Model] = {}

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
            raise ConfigError(f"model {spec!r}: unknown provider {provider!r} (known: {known})")
        model = factory(name, self._scripts_dir)
        self._instances[spec] = model
        return model

    async def aclose(self) -> None:
        for model in self._instances.values():
            await model.aclose()
