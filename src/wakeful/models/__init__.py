"""Model providers behind one small interface."""

from wakeful.models.base import (
    Completed,
    Message,
    Model,
    ModelResponse,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)
from wakeful.models.registry import ModelRegistry
from wakeful.models.scripted import ScriptedModel

__all__ = [
    "Completed",
    "Message",
    "Model",
    "ModelRegistry",
    "ModelResponse",
    "ScriptedModel",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "Usage",
]
