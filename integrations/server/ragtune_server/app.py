"""The FastAPI app: /v1/embeddings, /v1/search, /v1/models, /health, /v1/status, /v1/reload,
/v1/release.

Requests pass four layers before a handler, outermost first: ``Host`` and
``Origin`` (:mod:`ragtune_server.hosts`), CORS for the allowed origins, the API
key (:mod:`ragtune_server.auth`), and the body's media type, size and shape
(:mod:`ragtune_server.limits`). Who may do what: /health (ok or degraded, no
details) is open to all; the data routes need the key when the server has one;
what touches the server itself — /v1/release, /v1/reload, /v1/status (paths,
errors) — always needs a key, and answers 403 on a server started without one.

Handlers stay thin: validate (schemas), check limits, hand texts to the
micro-batcher, shape the OpenAI-style answer. Responses are built as plain
dicts holding numpy rows and serialised by :class:`FastJSONResponse`; the
response models are declared for the OpenAPI docs only, since validating
100k floats per response through pydantic would cost more than encoding them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from ragtune import __version__
from ragtune.encoders.encoder import truncate
from ragtune.encoders.loading import load_model, model_fingerprint, model_label
from ragtune.errors import RagtuneError
from ragtune.index.fusion import HybridConfig, read_hybrid
from ragtune.pairs.querylog import QueryLog
from ragtune_server.auth import BearerAuthMiddleware, check_api_key
from ragtune_server.batching import BatchConfig, BatcherClosedError, Encoded, QueueFullError
from ragtune_server.context import ServerContext
from ragtune_server.encoding import ModelWorker, to_base64
from ragtune_server.errors import APIError, install_error_handlers
from ragtune_server.hosts import HostOriginMiddleware, HostPolicy
from ragtune_server.jsonresponse import FastJSONResponse
from ragtune_server.limits import (
    FIELD_VALUES,
    FILTER_VALUES,
    SMALL_BODY,
    BodyLimitMiddleware,
    BodyRule,
    Limits,
    check_texts,
)
from ragtune_server.schemas import (
    EmbeddingRequest,
    EmbeddingResponse,
    ErrorBody,
    FeedbackRequest,
    ModelList,
    ModelObject,
    SearchRequest,
    SearchResponse,
)
from ragtune_server.search import (
    SearchBackend,
    SearchClosedError,
    build_filter,
    client_error,
    public_metadata,
)

log = logging.getLogger("ragtune_server")

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 408, 409, 413, 415, 502, 503)
}


def create_app(
    model: str | os.PathLike[str] | Any = "default",
    *,
    qdrant: str | None = None,
    collection: str = "ragtune",
    api_key: str | None = None,
    qdrant_api_key: str | None = None,
    model_name: str | None = None,
    limits: Limits | None = None,
    batching: BatchConfig | None = None,
    device: str | None = None,
    backend: str = "torch",
    backend_file: str | None = None,
    hosts: HostPolicy | None = None,
    query_log: str | os.PathLike[str] | None = None,
) -> FastAPI:
    """Build the app around ``model``: a folder, hub id, ``default``, or a ``SentenceTransformer``.

    The model loads here, so a bad one fails before a port is bound; the
    Qdrant collection (when ``qdrant`` is given) opens in the lifespan and is
    checked against the model then. ``model_name`` is what responses and
    /v1/models call the model (default: the name given, or ``all-MiniLM-L6-v2``).
    ``hosts`` says which ``Host`` and ``Origin`` headers are answered (default:
    loopback names at any port, and no other origin: :meth:`HostPolicy.for_bind`).
    Without ``api_key`` the admin routes answer 403. ``query_log`` (a folder) logs each
    search and enables POST /v1/feedback (:mod:`ragtune.pairs.querylog`); without it
    nothing is written and /v1/feedback answers 404.

    Raises:
        ConfigError: an empty ``api_key``.
    """
    check_api_key(api_key)
    hosts = hosts or HostPolicy.for_bind()
    hybrid = HybridConfig()
    if isinstance(model, (str, os.PathLike)) or model is None:
        name = model_name or model_label(model)
        hybrid = read_hybrid(model) if model is not None and Path(model).is_dir() else hybrid
        model = load_model(model, device=device, backend=backend, file=backend_file)
    else:
        name = model_name or type(model).__name__
    ctx = ServerContext(
        worker=ModelWorker(model),
        model_name=name,
        limits=limits or Limits(),
        batching=batching or BatchConfig(),
        qdrant=None if qdrant is None else str(qdrant),
        collection=collection,
        qdrant_api_key=qdrant_api_key,
        hybrid=hybrid,
        keyed=api_key is not None,
        query_log=None if query_log is None else QueryLog(query_log),
        model_fingerprint=None if query_log is None else model_fingerprint(model),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctx.start()
        try:
            yield
        finally:
            await ctx.stop()

    app = FastAPI(
        title="ragtune server",
        version=__version__,
        description="OpenAI-compatible embeddings, and search over a ragtune Qdrant collection.",
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
    )
    app.state.ragtune = ctx
    install_error_handlers(app)
    # added innermost first: each add_middleware wraps the ones before it
    app.add_middleware(
        BodyLimitMiddleware,
        rules=_body_rules(ctx.limits),
        default=BodyRule(SMALL_BODY),
        timeout=ctx.limits.body_timeout_s,
    )
    if api_key is not None:  # nothing reads a body before the key check
        app.add_middleware(BearerAuthMiddleware, api_key=api_key)
    if hosts.origins:  # allowed web apps can read the answers, and preflights pass the key check
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(hosts.origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(HostOriginMiddleware, policy=hosts)
    app.include_router(_routes())
    return app


def _body_rules(limits: Limits) -> dict[str, BodyRule]:
    """Each route's body limits, sized from what it takes; the fields are its request model's."""
    return {
        "/v1/embeddings": BodyRule(
            limits.body_bytes,
            frozenset(EmbeddingRequest.model_fields),
            limits.max_inputs + FIELD_VALUES,
            f"at most {limits.max_inputs} inputs, each a string, and a few small fields: "
            "split longer lists over several requests",
        ),
        "/v1/search": BodyRule(
            limits.query_body_bytes,
            frozenset(SearchRequest.model_fields),
            FILTER_VALUES + FIELD_VALUES,
            f"one query and a filter listing at most {FILTER_VALUES} values",
        ),
        "/v1/feedback": BodyRule(
            SMALL_BODY * 64,
            frozenset(FeedbackRequest.model_fields),
            2 * 100 + FIELD_VALUES,
            "a query_id, at most 100 chosen and 100 rejected ids, and a rating",
        ),
    }


def get_context(request: Request) -> ServerContext:
    """The app's :class:`ServerContext` (a dependency, so handlers never reach for globals)."""
    return request.app.state.ragtune


def _routes() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=_ERRORS)
    async def embeddings(
        body: EmbeddingRequest, ctx: ServerContext = Depends(get_context)
    ) -> Response:
        """Embed ``input`` with the document encoder (``input_type: "query"``: query encoder)."""
        check_texts(body.input, ctx.limits, "input")
        width = ctx.worker.dimension
        if body.dimensions is not None and not 1 <= body.dimensions <= width:
            raise APIError(
                400,
                f"dimensions={body.dimensions}: must be between 1 and {width} "
                f"(the width of {ctx.model_name})",
                param="dimensions",
                code="invalid_value",
            )
        encoded = await _encode(ctx, body.input, body.input_type or "document")
        vectors = encoded.vectors
        if body.dimensions is not None and body.dimensions < width:
            vectors = truncate(vectors, body.dimensions)
        as_base64 = body.encoding_format == "base64"
        data = [
            {"object": "embedding", "index": i, "embedding": to_base64(v) if as_base64 else v}
            for i, v in enumerate(vectors)
        ]
        tokens = int(sum(encoded.tokens))
        return FastJSONResponse(
            {
                "object": "list",
                "data": data,
                "model": ctx.model_name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @router.post("/v1/search", response_model=SearchResponse, responses=_ERRORS)
    async def search(body: SearchRequest, ctx: ServerContext = Depends(get_context)) -> Response:
        """The ``top_k`` chunks nearest to ``query``, optionally filtered on payload fields."""
        backend = _search_backend(ctx)
        check_texts([body.query], ctx.limits, "query", indexed=False)
        query_filter = build_filter(body.filter)
        encoded = await _encode(ctx, [body.query], "query")
        try:
            hits = await backend.search(
                encoded.vectors[0], body.top_k, body.mode, query_filter, body.two_stage, body.query, ctx.hybrid
            )
        except SearchClosedError as exc:
            raise _unavailable(ctx) from exc
        except RagtuneError:
            raise  # the request does not fit the collection (two_stage without small vectors): 400
        except Exception as exc:
            refused = client_error(exc)
            if refused is not None:
                raise APIError(400, refused, param="filter", code="invalid_filter") from exc
            log.exception("search failed")
            raise APIError(
                502,
                f"the Qdrant search failed ({type(exc).__name__}); see the server log",
                code="search_failed",
            ) from exc
        tokens = int(sum(encoded.tokens))
        logged = {}
        if ctx.query_log is not None:
            qid = ctx.query_log.search(
                body.query, body.mode, body.top_k, [(h.id, h.score) for h in hits],
                model=ctx.model_fingerprint, collection=backend.collection,
            )
            logged = {"query_id": qid}
        return FastJSONResponse(
            {
                **logged,
                "results": [
                    {
                        "id": h.id,
                        "score": h.score,
                        "text": h.text,
                        "metadata": public_metadata(h.metadata),
                    }
                    for h in hits
                ],
                "model": ctx.model_name,
                "collection": backend.collection,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @router.post("/v1/feedback", responses=_ERRORS)
    async def feedback(body: FeedbackRequest, ctx: ServerContext = Depends(get_context)) -> Response:
        """Record which results of a logged search answered it (``chosen``), which did not
        (``rejected``), or an overall ``rating``; ``ragtune run --queries`` trains on them."""
        if ctx.query_log is None:
            raise APIError(404, "feedback needs a query log: start the server with --log-queries DIR",
                           code="feedback_not_enabled")
        returned = ctx.query_log.returned(body.query_id)
        if returned is None:
            raise APIError(404, f"query_id {body.query_id!r}: no such search in this server's log",
                           param="query_id", code="unknown_query_id")
        if not (body.chosen or body.rejected or body.rating is not None):
            raise APIError(400, "say something: chosen, rejected or rating", code="empty_feedback")
        for param in ("chosen", "rejected"):
            unknown = [i for i in getattr(body, param) if i not in returned]
            if unknown:
                raise APIError(422, f"{param}: {unknown[0]!r} is not among that search's results",
                               param=param, code="unknown_result_id")
        fid = ctx.query_log.feedback(body.query_id, body.chosen, body.rejected, body.rating)
        return FastJSONResponse({"id": fid, "query_id": body.query_id, "status": "recorded"})

    @router.post("/v1/reload", responses=_ERRORS)
    async def reload(ctx: ServerContext = Depends(get_context)) -> Response:
        """Reopen the collection, to serve what was written to it since it was opened.

        An embedded folder can be written by one process at a time: POST
        /v1/release, run ``ragtune index`` on the folder, then POST /v1/reload.
        A collection that cannot be opened (gone, locked by another process, of
        another model) is a 409 and is never served: a Qdrant server's previous
        collection stays, an embedded folder stays released (search: 503).
        """
        _require_key(ctx, "POST /v1/reload")
        _require_search(ctx)
        try:
            backend = await ctx.reload()
        except RagtuneError as exc:
            raise APIError(
                409, f"the collection could not be reopened: {exc}", code="reload_failed"
            ) from exc
        return FastJSONResponse(
            {"collection": backend.collection, "status": "open", "points": await backend.count()}
        )

    @router.post("/v1/release", responses=_ERRORS)
    async def release(ctx: ServerContext = Depends(get_context)) -> Response:
        """Close the collection (and an embedded folder's lock) until POST /v1/reload;
        /v1/search answers 503 meanwhile, /v1/embeddings keeps working."""
        _require_key(ctx, "POST /v1/release")
        _require_search(ctx)
        await ctx.release()
        return FastJSONResponse({"collection": ctx.collection, "status": "released"})

    @router.get("/v1/models", response_model=ModelList, responses=_ERRORS)
    async def models(ctx: ServerContext = Depends(get_context)) -> Response:
        """The one served model, in OpenAI's list shape."""
        return FastJSONResponse({"object": "list", "data": [_model_object(ctx)]})

    @router.get("/v1/models/{model_id:path}", response_model=ModelObject, responses=_ERRORS)
    async def model(model_id: str, ctx: ServerContext = Depends(get_context)) -> Response:
        """The served model by id (OpenAI's ``models.retrieve``); 404 for any other id."""
        if model_id != ctx.model_name:
            raise APIError(
                404,
                f"model {model_id!r} is not served here; this server serves {ctx.model_name!r}",
                param="model",
                code="model_not_found",
            )
        return FastJSONResponse(_model_object(ctx))

    @router.get("/health")
    async def health(ctx: ServerContext = Depends(get_context)) -> Response:
        """Liveness, open to all: ``ok``, or ``degraded`` (503) when the configured collection
        cannot be counted; nothing else (no error text, no paths: GET /v1/status, with the key)."""
        ok = (await _collection_status(ctx)).get("error") is None
        return FastJSONResponse({"status": "ok" if ok else "degraded"}, status_code=200 if ok else 503)

    @router.get("/v1/status")
    async def status(ctx: ServerContext = Depends(get_context)) -> Response:
        """What is served: the model, the collection (its store, points, or why it cannot be
        counted) and the micro-batcher's counters; needs the key, like the admin routes."""
        _require_key(ctx, "GET /v1/status")
        collection = await _collection_status(ctx) if ctx.search_configured else None
        return FastJSONResponse(
            {
                "status": "degraded" if collection and "error" in collection else "ok",
                "model": ctx.model_name,
                "dimension": ctx.worker.dimension,
                "max_seq_length": ctx.worker.max_seq_length,
                "collection": collection,
                "batching": ctx.batcher.stats.as_dict() if ctx.batcher else None,
            }
        )

    return router


def _search_backend(ctx: ServerContext) -> SearchBackend:
    """The open collection; 404 when the server has none, 503 while it is released."""
    _require_search(ctx)
    if ctx.search is None:
        raise _unavailable(ctx)
    return ctx.search


async def _collection_status(ctx: ServerContext) -> dict[str, Any]:
    """The collection's name, store and points, or ``error`` when it cannot be counted
    ({} when the server has none)."""
    if not ctx.search_configured:
        return {}
    info: dict[str, Any] = {"name": ctx.collection, "store": ctx.qdrant}
    try:
        info["points"] = await _search_backend(ctx).count()
    except APIError as exc:
        info["error"] = exc.message
    except Exception as exc:  # noqa: BLE001 - any failure is "degraded", and said so
        info["error"] = f"{type(exc).__name__}: {exc}"[:300]
    return info


def _require_key(ctx: ServerContext, route: str) -> None:
    """403 on a server without an API key: what touches the server itself needs one (the key
    check itself ran before the handler, in :class:`BearerAuthMiddleware`)."""
    if not ctx.keyed:
        raise APIError(
            403,
            f"{route} needs an API key, and this server was started without one: restart it "
            "with --api-key KEY (or RAGTUNE_API_KEY) and send 'Authorization: Bearer KEY'",
            code="api_key_required",
        )


def _require_search(ctx: ServerContext) -> None:
    if not ctx.search_configured:
        raise APIError(
            404,
            "search is not enabled on this server: "
            "start it with --store PATH_OR_URL --collection NAME",
            code="search_not_configured",
        )


def _unavailable(ctx: ServerContext) -> APIError:
    return APIError(
        503,
        f"collection {ctx.collection!r} is not open (released for re-indexing, or being "
        "reopened); retry, or POST /v1/reload to open it",
        code="collection_unavailable",
        headers={"Retry-After": "1"},
    )


async def _encode(ctx: ServerContext, texts: Sequence[str], kind: str) -> Encoded:
    if ctx.batcher is None:
        raise APIError(503, "the server is starting or stopping; retry", code="unavailable")
    try:
        return await ctx.batcher.submit(texts, kind)
    except QueueFullError as exc:
        raise APIError(
            503,
            f"the server is overloaded ({exc}); retry shortly",
            code="overloaded",
            headers={"Retry-After": "1"},
        ) from exc
    except BatcherClosedError as exc:
        raise APIError(503, f"{exc}; retry", code="unavailable") from exc


def _model_object(ctx: ServerContext) -> dict[str, Any]:
    return {"id": ctx.model_name, "object": "model", "created": ctx.created, "owned_by": "ragtune"}
