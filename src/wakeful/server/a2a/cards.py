"""Agent cards: what an A2A client learns about a Wakeful agent before calling it.

A card is built per request from the agent's definition (name, role, instructions)
and the address the client used, so the interface URLs are right behind a proxy or on
any port. It declares both transports (JSON-RPC and HTTP+JSON at the same URL),
streaming, push notifications when they are delivered, and the bearer-token scheme
unless the project made its A2A agents public (``a2a: {auth: none}``).
"""

from __future__ import annotations

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol

from wakeful import __version__
from wakeful.project.definitions import AgentDefinition

MAX_DESCRIPTION = 2000
SCHEME = "bearer"


def describe(definition: AgentDefinition) -> str:
    parts = [definition.role.strip(), definition.instructions.strip()]
    text = "\n\n".join(p for p in parts if p) or f"The Wakeful agent {definition.name}."
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 3] + "..."


def agent_card(definition: AgentDefinition, url: str, *, push: bool, bearer: bool
               ) -> AgentCard:
    """The card of ``definition`` served at ``url`` (``.../a2a/{agent}``)."""
    card = AgentCard(
        name=definition.name,
        description=describe(definition),
        version=__version__,
        provider=AgentProvider(organization="Wakeful",
                               url="https://pypi.org/project/wakeful/"),
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC.value,
                           protocol_version=PROTOCOL_VERSION_1_0),
            AgentInterface(url=url, protocol_binding=TransportProtocol.HTTP_JSON.value,
                           protocol_version=PROTOCOL_VERSION_1_0),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=push),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(
            id=definition.name, name=definition.role or definition.name,
            description=describe(definition), tags=["wakeful", definition.name],
            input_modes=["text/plain", "application/json"], output_modes=["text/plain"])],
    )
    if bearer:
        card.security_schemes[SCHEME].CopyFrom(SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="Bearer", description="the project's API token (.wakeful/token)")))
        card.security_requirements.append(SecurityRequirement(
            schemes={SCHEME: StringList()}))
    return card
