"""ragtune's HTTP server: OpenAI-compatible ``/v1/embeddings`` and ``/v1/search`` over Qdrant.

    ragtune serve --model runs/demo/model --store runs/demo/qdrant --collection demo

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="KEY")
    client.embeddings.create(model="any", input=["tram fares"]).data[0].embedding

Any OpenAI embeddings client (LangChain, LlamaIndex's ``OpenAIEmbedding`` with
``api_base``) works with the URL changed. Concurrent requests are merged into
shared model calls (:mod:`ragtune_server.batching`). Needs ``ragtune[server]``.
"""

from ragtune_server.app import create_app
from ragtune_server.batching import BatchConfig
from ragtune_server.limits import Limits
from ragtune_server.server import serve

__all__ = ["BatchConfig", "Limits", "create_app", "serve"]
