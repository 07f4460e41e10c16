"""Project folders: the plain files that define a team of agents."""

from wakeful.project.definitions import (
    AgentDefinition,
    ProjectConfig,
    ResourcesConfig,
    RestartPolicy,
    ScheduleEntry,
    StartupTask,
)
from wakeful.project.loader import Project, load_project

__all__ = [
    "AgentDefinition",
    "Project",
    "ProjectConfig",
    "ResourcesConfig",
    "RestartPolicy",
    "ScheduleEntry",
    "StartupTask",
    "load_project",
]
