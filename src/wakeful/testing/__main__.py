"""``python -m wakeful.testing``: run the local OpenAI-compatible test server."""

from wakeful.testing.openai_server import main

main()
