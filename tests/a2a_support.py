"""Shared pieces of the A2A tests: a served team and the a2a-sdk's own client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from a2a.client import Client, ClientConfig, create_client
from a2a.types import Message, Part, Role, SendMessageConfiguration, SendMessageRequest

from web_support import TOKEN


@asynccontextmanager
async def sdk_client(base_url: str, agent: str, *, streaming: bool = True,
                     binding: str = "JSONRPC", token: str | None = TOKEN
                     ) -> AsyncIterator[Client]:
    """The a2a-sdk client for ``agent``, built from its card like any A2A client."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        config = ClientConfig(streaming=streaming, httpx_client=http,
                              supported_protocol_bindings=[binding])
        client = await create_client(f"{base_url.rstrip('/')}/a2a/{agent}",
                                     client_config=config)
        try:
            yield client
        finally:
            await client.close()


def user_message(text: str, *, message_id: str = "m-1", task_id: str = "",
                 context_id: str = "", metadata: dict[str, Any] | None = None) -> Message:
    message = Message(message_id=message_id, role=Role.ROLE_USER, parts=[Part(text=text)],
                      task_id=task_id, context_id=context_id)
    if metadata:
        message.metadata.update(metadata)
    return message


def send_request(message: Message, *, return_immediately: bool = False
                 ) -> SendMessageRequest:
    return SendMessageRequest(message=message, configuration=SendMessageConfiguration(
        return_immediately=return_immediately))
