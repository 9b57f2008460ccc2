"""The HTTP API (FastAPI). The request path never calls an LLM: it reads the persona and the
latest events from the store, scores the live sequence with the trained model and lets the
persona shape the list. New events are stored durably before ``202 Accepted`` and schedule a
background refresh; a stale persona is served while its refresh is queued
(stale-while-revalidate).

Lists come from :class:`personarec.recommend.pipeline.RankingPipeline`, the pipeline offline
evaluation ranks with: for the same history, persona and no edits, the API returns the evaluated
list.

Unknown users get **404** (no cold-start fallback: a user exists once the offline data or a
``POST /v1/events`` has introduced them), unknown items in events **422**, malformed input
**422**. Store outages answer **503**; anything else is a bug: **500** with a request id that
the log repeats next to the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from pydantic import BaseModel, ConfigDict, Field

from personarec.personas.schema import Persona, PersonaEdits
from personarec.serve.assets import ServingAssets
from personarec.serve.auth import ApiKey, AuthError, Authenticator, Bearer, Principal
from personarec.serve.config import ServeConfig
from personarec.serve.queue import RefreshQueue
from personarec.recommend.persona_ranking import (
    Ranked,
    RankRequest,
    UnknownTopicError,
    apply_edits,
    check_edits,
    edited_persona,
)
from personarec.personas.store.base import ServingStore, is_store_full, is_store_outage
from personarec.serve.worker import LAG_BUCKETS

log = logging.getLogger("personarec.serve.api")

UserId = Annotated[str, Path(min_length=1, max_length=128, description="external user id")]
MAX_TS = 2**53  # JSON-safe integer range; anything larger is not a Unix time
RETRY_AFTER_S = 2  # what a 503 (store outage) tells clients to wait


# -- bodies ------------------------------------------------------------------------------------
class EventIn(BaseModel):
    """One interaction."""

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    item_id: str = Field(min_length=1, max_length=128)
    timestamp: int = Field(ge=0, le=MAX_TS, description="Unix seconds")
    rating: float | None = Field(None, allow_inf_nan=False, ge=-1e6, le=1e6)


class EventsIn(BaseModel):
    """A batch of interactions, stored in order (per user) before the API answers."""

    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventsAccepted(BaseModel):
    accepted: int
    last_seq: dict[str, int] = Field(description="per user: sequence number of their last stored event")
    refresh_queued: bool = Field(description="a persona refresh is queued for every user in the batch")
    refresh_shed: list[str] = Field(
        default_factory=list,
        description="users whose refresh the full queue shed: their events are stored and their current persona "
        "is served; a later event or read schedules the refresh again",
    )


class RecommendedItem(BaseModel):
    item_id: str
    title: str | None
    score: float
    cluster: str
    kind: str = Field(description="interest | added_topic | model | explore")
    explanation: str


class Recommendations(BaseModel):
    user_id: str
    persona_version: int | None = Field(description="history cut-off of the persona used (None: no persona yet)")
    persona_stale: bool = Field(
        description="the persona predates the user's latest events (a refresh is queued, or shed while the refresh queue is full)"
    )
    history_length: int
    model: str | None
    explore: float
    items: list[RecommendedItem]
    sync_llm_seconds: float | None = None


class PersonaView(BaseModel):
    user_id: str
    version: int | None
    last_seq: int = Field(description="sequence number of the user's latest event")
    stale: bool
    fallback: bool | None = None
    persona: dict[str, Any] | None = Field(description="the persona with the user's edits applied (None: not written yet)")
    edits: PersonaEdits


class ErrorBody(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    store: str
    model: str | None
    workers: list[int]
    queue_depth: float
    queue_oldest_age_s: float = 0.0
    auth: str = Field("on", description='"off" when the server runs without authentication (local development only)')


# -- state -------------------------------------------------------------------------------------
@dataclass
class ApiState:
    store: ServingStore
    assets: ServingAssets
    config: ServeConfig = field(default_factory=ServeConfig)
    worker_pids: Any = None  # callable -> list[int]
    sync_writer: Any = None  # PersonaWriter, only with serve.benchmark_endpoints
    offline_copy: Any = None  # StoreURL of the run's offline persona store when it is not `store` (erasure reaches it)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.auth = Authenticator(self.config.auth)  # a misconfiguration fails here, at start
        self.queue = RefreshQueue(self.store, self.config.queue)
        self.latency = Histogram(
            "personarec_request_seconds", "HTTP request latency", ["route", "method", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )  # fmt: skip
        self.stale_reads = Counter("personarec_stale_reads", "stale personas served (refresh queued, or shed while the queue is full)", registry=self.registry)
        self.events_in = Counter("personarec_events", "events accepted", registry=self.registry)
        self.registry.register(StoreCollector(self.store))
        self._sync_lock = threading.Lock()
        # requests are scored off the event loop (a slow one must not stall /healthz) on a bounded
        # pool: serve.api_threads threads, each using one torch thread, so the API's CPU and memory
        # (one malloc arena and torch state per thread) stay bounded whatever the concurrency
        self.scoring = ThreadPoolExecutor(max_workers=self.config.api_threads, thread_name_prefix="score")

    def write_persona_now(self, history: Any) -> Persona:
        """Benchmark-only ``sync_llm``: write the persona on the request path (one at a time)."""
        with self._sync_lock:
            return self.sync_writer.write(history).persona


class StoreCollector:
    """Exports what the workers record in the store (shared by every process)."""

    def __init__(self, store: ServingStore) -> None:
        self.store = store

    def collect(self):
        try:
            now = time.time()
            q, s, live = self.store.queue_stats(now), self.store.stats(), self.store.live_workers(now)
        except Exception:  # noqa: BLE001 - /metrics must not fail because the store blinked
            return
        depth = GaugeMetricFamily("personarec_queue_depth", "refresh jobs queued or leased", labels=["state"])
        depth.add_metric(["total"], q["depth"])
        depth.add_metric(["leased"], q["leased"])
        depth.add_metric(["due"], q["due"])
        yield depth
        age = GaugeMetricFamily("personarec_queue_oldest_age_seconds", "age of the oldest refresh job's first pending event")
        age.add_metric([], q["oldest_age_s"])
        yield age
        ready = GaugeMetricFamily("personarec_workers_ready", "refresh worker processes alive (heartbeat within 20 s), on any host")
        ready.add_metric([], float(live))
        yield ready
        for name, key, doc in (
            ("personarec_refreshes", "refreshes", "personas written by refresh workers"),
            ("personarec_llm_errors", "llm_errors", "refreshes where the LLM failed after retries"),
            ("personarec_llm_personas", "llm_personas", "LLM-written personas stored by refresh workers"),
            ("personarec_fallbacks", "fallbacks", "fallback personas stored (the LLM failed for a user without a persona, or the fallback writer)"),
            ("personarec_refresh_jobs", "refresh_jobs", "refresh jobs processed"),
            ("personarec_refresh_shed", "shed", "refreshes shed because the refresh queue was full (events kept, stale persona served)"),
            ("personarec_refresh_shed_evicted", "shed_evicted", "of those, queued refreshes of users with a persona shed for a user without one"),
            ("personarec_refresh_shed_on_read", "shed_on_read", "refreshes a stale read asked for and the full queue refused (counted per read)"),
        ):
            c = CounterMetricFamily(name, doc)
            c.add_metric([], s.get(key, 0.0))
            yield c
        cumulative, buckets = 0.0, []
        for b in (*LAG_BUCKETS, float("inf")):
            cumulative += s.get(f"lag_bucket:{b}", 0.0)
            buckets.append(("+Inf" if b == float("inf") else str(b), cumulative))
        h = HistogramMetricFamily(
            "personarec_refresh_lag_seconds", "first unprocessed event acknowledged -> persona written"
        )
        h.add_metric([], buckets, s.get("lag_sum", 0.0))
        yield h


class TimingMiddleware:
    """Request latency histogram + a ``server-timing`` header (pure ASGI: no per-request task
    or body buffering, unlike ``BaseHTTPMiddleware``)."""

    def __init__(self, app, state: ApiState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                dur = (time.perf_counter() - start) * 1000
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"server-timing", f"app;dur={dur:.3f}".encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            self.state.latency.labels(getattr(route, "path", "unmatched"), scope["method"], str(status["code"])).observe(
                time.perf_counter() - start
            )


class ApiError(Exception):
    """An expected failure with its HTTP status and a message for the client (404, 422, 503)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _unknown_user(user_id: str) -> ApiError:
    return ApiError(404, f"unknown user {user_id!r}: no offline history and no events; POST /v1/events first")


# -- the serving object: what each endpoint does, without HTTP --------------------------------------
class Serving:
    """The API's behaviour over one store and one run's assets; the router only parses input."""

    def __init__(self, state: ApiState) -> None:
        self.state, self.store, self.assets = state, state.store, state.assets
        self.config, self.queue = state.config, state.queue

    def _known(self, user_id: str):
        st = self.store.user_state(user_id)
        if not self.assets.is_known(user_id, st):
            raise _unknown_user(user_id)
        return st

    def health(self) -> Health:
        q = self.store.queue_stats(time.time())
        pids = self.state.worker_pids() if self.state.worker_pids else []
        return Health(status="ok", store=type(self.store).__name__, model=self.assets.model_name, workers=pids,
                      queue_depth=q["depth"], queue_oldest_age_s=q["oldest_age_s"], auth=self.state.auth.summary)  # fmt: skip

    def live_history(self, user_id: str, *, full: bool = False):
        st = self._known(user_id)
        return st, self.assets.live_history(user_id, self.store, st, max_len=None if full else self.config.max_history)

    def recommendations(
        self, user_id: str, k: int, explore: float | None, *, persona: Persona | None = None, sync_s: float | None = None
    ) -> Recommendations:
        """``persona``: one just written on the request path (benchmark ``sync_llm``); else the stored one."""
        pipeline = self.assets.pipeline
        if pipeline is None:
            raise ApiError(503, "no trained model loaded; run `personarec train`")
        _, history = self.live_history(user_id)
        persona = persona if persona is not None else self.store.get(user_id)
        stale = persona is None or persona.version < history.last_seq or _too_old(persona, self.config.stale_after_s)
        if stale and sync_s is None:
            self.state.stale_reads.inc()
            if self.store.queued_job(user_id) is None:  # a read-only check first: most stale reads find a job
                self.queue.push(user_id, base_len=self.assets.base_len(user_id), touch=False)
        request = RankRequest(
            user_id=user_id, items=history.items, user_idx=history.user_idx, persona=persona,
            edits=self.store.get_edits(user_id), explore=explore,
        )  # fmt: skip
        ranked = pipeline.rank([request], k)[0]
        return Recommendations(
            user_id=user_id, persona_version=persona.version if persona is not None else None, persona_stale=stale,
            history_length=int(history.last_seq), model=self.assets.model_name,
            explore=pipeline.explore_share(request), items=[_item(self.assets, r) for r in ranked],
            sync_llm_seconds=sync_s,
        )  # fmt: skip

    def post_events(self, body: EventsIn) -> EventsAccepted:
        unknown = sorted({e.item_id for e in body.events if e.item_id not in self.assets.item_index})
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise ApiError(422, f"unknown item id(s) not in the catalogue: {shown}")
        by_user: dict[str, list[tuple[str, int, float | None]]] = {}
        for e in body.events:
            by_user.setdefault(e.user_id, []).append((e.item_id, e.timestamp, e.rating))
        spec = self.queue.spec()
        appended = {
            user: self.store.append_events(user, events, base_len=self.assets.base_len(user), enqueue=spec)
            for user, events in by_user.items()
        }
        self.state.events_in.inc(len(body.events))
        return EventsAccepted(
            accepted=len(body.events), last_seq={u: a.last_seq for u, a in appended.items()},
            refresh_queued=all(a.refresh_queued for a in appended.values()),
            refresh_shed=sorted(u for u, a in appended.items() if not a.refresh_queued),
        )  # fmt: skip

    def view(self, user_id: str) -> PersonaView:
        st = self._known(user_id)
        persona = self.store.get(user_id)
        edits = self.store.get_edits(user_id) or PersonaEdits()
        last_seq = st.last_seq if st is not None else self.assets.base_len(user_id)
        prof = apply_edits(persona, edits, self.assets.added_topic_weight, topics=self.assets.cluster_index)
        return PersonaView(
            user_id=user_id, version=persona.version if persona else None, last_seq=last_seq,
            stale=persona is None or persona.version < last_seq,
            fallback=persona.provenance.fallback if persona else None,
            persona=edited_persona(persona, prof) if persona else None, edits=edits,
        )  # fmt: skip

    def put_edits(self, user_id: str, edits: PersonaEdits) -> PersonaView:
        self._known(user_id)
        try:
            check_edits(edits, self.assets.cluster_index)  # free text never becomes a topic
        except UnknownTopicError as exc:
            raise ApiError(422, f"{exc}; valid topics are listed by GET /v1/topics") from None
        self.store.put_edits(user_id, edits)
        return self.view(user_id)

    def erase(self, user_id: str) -> None:
        self._known(user_id)
        self.store.delete_user(user_id)  # committed: the user is gone for every reader from here on
        try:
            self.store.purge(wait=False)  # and from the files (SQLite WAL now, Redis AOF in the background)
            if self.state.offline_copy is not None:  # the run's offline copy (other hosts clean theirs at start)
                offline = self.state.offline_copy.open()
                try:
                    offline.delete_user(user_id)
                    offline.purge(wait=True)
                finally:
                    offline.close()
        except Exception:  # noqa: BLE001 - the erasure stands; the next purge (or start) covers it
            log.exception("purge after erasing %r failed; run `personarec erasures --purge`", user_id)
            self.store.incr_stats({"purge_failures": 1})


# -- HTTP: the router, the error handlers, the app ----------------------------------------------
AUTH = {
    401: {"model": ErrorBody, "description": "missing, invalid or expired credentials"},
    403: {"model": ErrorBody, "description": "these credentials may not call this endpoint, or not for this user"},
}
KNOWN = {**AUTH, 404: {"model": ErrorBody, "description": "unknown user"}}
ExploreQuery = Annotated[
    float | None,
    Query(ge=0.0, le=1.0, description="share of explore items (default: the served model's own, i.e. its explore quota for a persona model, 0 for a plain one)"),
]  # fmt: skip


def _caller(request: Request, api_key: ApiKey, bearer: Bearer) -> Principal:
    """The authenticated caller of a request (401 when there is none)."""
    return request.app.state.api.auth.authenticate(api_key, bearer.credentials if bearer is not None else None)


Caller = Annotated[Principal, Depends(_caller)]


def router(serving: Serving) -> APIRouter:
    """The endpoints: parse input, call :class:`Serving`, return its answer."""
    r = APIRouter()
    state = serving.state
    auth = state.auth

    @r.get("/healthz", response_model=Health, tags=["ops"])
    def healthz() -> Health:
        return serving.health()

    @r.get("/metrics", response_class=PlainTextResponse, tags=["ops"])
    def metrics() -> Response:
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    @r.get("/v1/topics", tags=["personas"], response_model=list[str], responses=AUTH)
    def topics(who: Caller) -> list[str]:
        """Topic names a persona (and a user's edits) may use: the catalogue's fine clusters."""
        auth.authorize(who, "topics")
        return list(serving.assets.space.fine_names)

    @r.get("/v1/users/{user_id}/recommendations", response_model=Recommendations, responses=KNOWN, tags=["recommendations"])
    async def recommendations(
        who: Caller,
        user_id: UserId,
        k: Annotated[int, Query(ge=1, le=100, description="list length")] = 10,
        explore: ExploreQuery = None,
        sync_llm: Annotated[bool, Query(description="benchmark only: write the persona on the request path")] = False,
    ) -> Recommendations:
        """Top-k items for the user's live history, ranked with their persona by the pipeline offline
        evaluation uses. Never calls an LLM (except the benchmark-only ``sync_llm`` mode, which must
        be enabled in the config). Service key, admin, or the user's own token."""
        auth.authorize(who, "recommend", user_id)
        if not (sync_llm and state.sync_writer is not None):
            return await asyncio.get_running_loop().run_in_executor(state.scoring, serving.recommendations, user_id, k, explore)
        t0 = time.perf_counter()
        persona = await run_in_threadpool(state.write_persona_now, serving.live_history(user_id, full=True)[1])
        return await asyncio.get_running_loop().run_in_executor(
            state.scoring, lambda: serving.recommendations(user_id, k, explore, persona=persona, sync_s=time.perf_counter() - t0)
        )

    @r.post("/v1/events", status_code=202, response_model=EventsAccepted, tags=["events"], responses=AUTH)
    def post_events(who: Caller, body: EventsIn) -> EventsAccepted:
        """Store a batch of interactions durably (before answering) and schedule refreshes.
        Service key or admin."""
        auth.authorize(who, "events")
        return serving.post_events(body)

    @r.get("/v1/users/{user_id}/persona", response_model=PersonaView, responses=KNOWN, tags=["personas"])
    def get_persona(who: Caller, user_id: UserId) -> PersonaView:
        """The persona as served (user edits applied), its version and whether it is stale.
        The user's own token or admin."""
        auth.authorize(who, "persona", user_id)
        return serving.view(user_id)

    @r.put("/v1/users/{user_id}/persona", response_model=PersonaView, responses=KNOWN, tags=["personas"])
    def put_persona(who: Caller, user_id: UserId, edits: PersonaEdits) -> PersonaView:
        """Replace the user's edits: interests to remove, topics to add or block (topic names
        from ``GET /v1/topics``). Edits are kept apart from generated personas and applied on
        every read, so they survive refreshes. The user's own token or admin."""
        auth.authorize(who, "persona", user_id)
        return serving.put_edits(user_id, edits)

    @r.delete("/v1/users/{user_id}/persona", status_code=204, responses=KNOWN, tags=["personas"])
    def delete_persona(who: Caller, user_id: UserId) -> Response:
        """Erase the user: persona, edits, stored events and queued refreshes; the offline
        history is no longer used for them. In-flight refreshes are discarded. The user's own
        token or admin (erasure on request)."""
        auth.authorize(who, "persona", user_id)
        serving.erase(user_id)
        return Response(status_code=204)

    return r


def install_error_handlers(app: FastAPI) -> None:
    """422 for malformed input, the :class:`ApiError` status for expected failures, 503 for a
    store outage, and 500 with a request id (logged with the traceback) for anything else: a bug."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", [])), "msg": str(e.get("msg", ""))} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    @app.exception_handler(ApiError)
    async def expected(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail})

    @app.exception_handler(AuthError)
    async def refused(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail}, headers=exc.headers)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:16]
        headers = {"x-request-id": request_id}
        if is_store_full(exc):  # the disk or quota is full: nothing of this request was stored
            log.error("store full (request %s): %r", request_id, exc)
            status, detail = 507, f"store full ({exc}); nothing from this request was stored: free space, then retry"
            headers["Retry-After"] = str(RETRY_AFTER_S * 30)
        elif is_store_outage(exc):  # the store blinked: retryable, not a bug; nothing was acknowledged
            log.warning("store unavailable (request %s): %r", request_id, exc)
            status, detail = 503, f"store unavailable ({type(exc).__name__}); retry shortly"
            headers["Retry-After"] = str(RETRY_AFTER_S)
        else:
            log.exception("bug while serving %s %s (request %s)", request.method, request.url.path, request_id)
            status, detail = 500, f"internal error; quote request id {request_id} when reporting it"
        return JSONResponse(status_code=status, content={"detail": detail, "request_id": request_id}, headers=headers)


def create_app(state: ApiState) -> FastAPI:
    """The FastAPI app over ``state``: timing middleware, error handlers, the router."""
    app = FastAPI(
        title="personarec serving API",
        version="1",
        description=(__doc__ or "").strip(),
        responses={422: {"description": "invalid input"}},
    )
    app.state.api = state
    app.add_middleware(TimingMiddleware, state=state)
    install_error_handlers(app)
    app.include_router(router(Serving(state)))
    app.openapi = lambda: _openapi_with_examples(app, state.assets)  # type: ignore[method-assign]
    return app


def _openapi_with_examples(app: FastAPI, assets: ServingAssets) -> dict[str, Any]:
    """The spec, with examples taken from this run's data (a real user and item), so that
    clients and API fuzzers reach past the 404/422 checks."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        user = str(assets.split.user_ids[0]) if assets.split.n_users else "1"
        item = str(assets.split.item_ids[0]) if assets.split.n_items else "1"
        for path in spec.get("paths", {}).values():
            for op in path.values():
                for param in op.get("parameters", []):
                    if param.get("name") == "user_id":
                        param["example"] = user
        schemas = spec.get("components", {}).get("schemas", {})
        if "EventIn" in schemas:
            schemas["EventIn"]["example"] = {"user_id": user, "item_id": item, "timestamp": 1_700_000_000, "rating": 4.0}
        if "PersonaEdits" in schemas and assets.space.n_fine:
            schemas["PersonaEdits"]["example"] = {"added_topics": [assets.space.fine_names[0]]}
        app.openapi_schema = spec
    return app.openapi_schema


def _too_old(persona: Persona, max_age_s: float | None) -> bool:
    if max_age_s is None:
        return False
    from datetime import datetime

    try:
        created = datetime.fromisoformat(persona.provenance.created_at).timestamp()
    except ValueError:
        return True
    return time.time() - created > max_age_s


def _item(assets: ServingAssets, r: Ranked) -> RecommendedItem:
    return RecommendedItem(
        item_id=str(assets.split.item_ids[r.item]), title=assets.titles[r.item] if assets.titles else None,
        score=round(r.score, 4) if np.isfinite(r.score) else 0.0, cluster=r.cluster, kind=r.kind,
        explanation=r.reason,
    )  # fmt: skip
