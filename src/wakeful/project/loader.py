"""Load a project folder: ``wakeful.yaml`` plus one file per agent.

A broken agent file must not take the team down: each file is validated on its own,
its problems are collected as :class:`ConfigError` with the file, the field and what
was expected, and every other agent still loads. Only a broken ``wakeful.yaml`` (which
everything depends on) stops the load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wakeful.core.validation import describe_validation_error
from wakeful.errors import ConfigError, UnknownAgentError
from wakeful.project.definitions import AgentDefinition, ProjectConfig
from wakeful.yamlfile import parse_yaml, read_text

STORE_URL_ENV = "WAKEFUL_STORE_URL"
PROJECT_FILE = "wakeful.yaml"
AGENT_SUFFIXES = (".yaml", ".yml", ".md")


def _read_yaml(path: Path, text: str) -> Any:
    return parse_yaml(text, path)


def _split_frontmatter(path: Path, text: str) -> tuple[dict[str, Any], str]:
    """Markdown agent files: YAML between ``---`` lines, then the instructions."""
    if not text.startswith("---"):
        raise ConfigError(f"{path}: a Markdown agent file must start with '---' frontmatter")
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        raise ConfigError(f"{path}: frontmatter is not closed by a '---' line")
    header = _read_yaml(path, parts[0].removeprefix("---"))
    if header is None:
        header = {}
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: frontmatter must be a mapping of fields")
    body = parts[1].split("\n", 1)[1] if "\n" in parts[1] else ""
    return header, body.strip()


def load_agent_file(path: Path) -> AgentDefinition:
    """Parse and validate one agent file; raise ConfigError naming the file."""
    text = read_text(path, "agent file")
    if path.suffix == ".md":
        data, body = _split_frontmatter(path, text)
        if body and "instructions" not in data:
            data["instructions"] = body
    else:
        data = _read_yaml(path, text)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: an agent file must be a mapping of fields")
    data.setdefault("name", path.stem)
    try:
        return AgentDefinition.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(str(path), exc, AgentDefinition)) from None


def load_project_config(root: Path) -> ProjectConfig:
    path = root / PROJECT_FILE
    if not root.is_dir():
        raise ConfigError(f"{root}: project folder does not exist (create one with 'wakeful init')")
    if not path.is_file():
        raise ConfigError(f"{path}: no project file here (create one with 'wakeful init')")
    data = _read_yaml(path, read_text(path, "the project file")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the project file must be a mapping of fields")
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(str(path), exc, ProjectConfig)) from None


@dataclass
class Project:
    """A loaded project: its config, the agents that validated, and the files that didn't."""

    root: Path
    config: ProjectConfig
    agents: dict[str, AgentDefinition] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)

    @property
    def scripts_dir(self) -> Path:
        return self.root / self.config.scripts_dir

    @property
    def workspace_path(self) -> Path:
        path = Path(self.config.workspace)
        return path if path.is_absolute() else self.root / path

    def agent(self, name: str) -> AgentDefinition:
        try:
            return self.agents[name]
        except KeyError:
            raise UnknownAgentError(name, list(self.agents)) from None

    def store_url(self) -> str:
        """The store this project runs on: ``WAKEFUL_STORE_URL`` (also set by ``--store``
        on any command) or ``store.url`` in wakeful.yaml; SQLite paths made absolute."""
        given = os.environ.get(STORE_URL_ENV)
        url = given or self.config.store.url
        where = (f"${STORE_URL_ENV} / --store" if given else
                 f"{self.root / PROJECT_FILE}: field 'store.url'")
        if url.startswith(("postgresql://", "postgres://")):
            return url
        if not url.startswith("sqlite:///"):
            raise ConfigError(f"{where}: expected sqlite:///PATH or "
                              f"postgresql://USER@HOST:PORT/DB (got {url!r})")
        path = Path(url.removeprefix("sqlite:///"))
        return str(path if path.is_absolute() else self.root / path)

    def store_path(self) -> Path:
        """The SQLite file of this project (an error on another backend)."""
        url = self.store_url()
        if "://" in url:
            raise ConfigError(f"this needs a SQLite store; the project's store is {url}")
        return Path(url)


def load_project(root: Path | str) -> Project:
    """Load ``root``. Agent-file problems are returned in ``Project.errors``."""
    root = Path(root).resolve()
    config = load_project_config(root)
    project = Project(root=root, config=config)
    agents_dir = root / config.agents_dir
    if not agents_dir.is_dir():
        return project
    sources: dict[str, Path] = {}
    for path in sorted(agents_dir.iterdir()):
        if path.suffix not in AGENT_SUFFIXES or path.name.startswith("."):
            continue
        try:
            agent = load_agent_file(path)
        except ConfigError as exc:
            project.errors.append(exc)
            continue
        if agent.name in sources:
            project.errors.append(
                ConfigError(f"{path}: agent name {agent.name!r} is already defined in "
                            f"{sources[agent.name]}")
            )
            continue
        sources[agent.name] = path
        project.agents[agent.name] = agent
    for index, channel in enumerate(config.mailbox.channels):
        for member in channel.members:
            if not member.startswith("person:") and member not in project.agents:
                project.errors.append(
                    ConfigError(f"{root / PROJECT_FILE}: field 'mailbox.channels.{index}."
                                f"members': {UnknownAgentError(member, list(project.agents))}"
                                " (this member is left out)"))
        if channel.answer != "everyone" and channel.answer not in project.agents:
            project.errors.append(
                ConfigError(f"{root / PROJECT_FILE}: field 'mailbox.channels.{index}."
                            f"answer': {UnknownAgentError(channel.answer, list(project.agents))}"
                            " (say 'everyone' or an agent's name)"))
    for index, startup in enumerate(config.startup_tasks):
        if startup.agent not in project.agents:
            project.errors.append(
                ConfigError(f"{root / PROJECT_FILE}: field 'startup_tasks.{index}.agent': "
                            f"{UnknownAgentError(startup.agent, list(project.agents))}")
            )
    return project
