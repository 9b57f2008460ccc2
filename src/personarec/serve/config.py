"""``[serve]`` section of the run config: store, API, refresh workers, request knobs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from personarec.recommend.persona_ranking import RankingConfig
from personarec.serve.auth import AuthConfig
from personarec.serve.queue import QueueConfig


class ServeConfig(BaseModel):
    """The serving stage: ``personarec serve`` reads this section."""

    model_config = ConfigDict(extra="forbid")

    store: str | None = Field(
        None, description="store URL: sqlite:///path.db or redis://host:port/0; None = the personas store in the run dir"
    )
    host: str = Field("127.0.0.1", description="API bind address")
    port: int = Field(8000, ge=0, le=65535, description="API port (0 = pick a free one)")
    workers: int = Field(1, ge=0, le=64, description="refresh worker processes (0 = API only)")
    model: str | None = Field(
        None,
        description="trained recommender under RUN_DIR/models/ (None = persona_hybrid if trained, else sasrec, else the first found)",
    )
    writer: str = Field("llm", description="persona writer of the refresh workers: llm | fallback")
    backend: str | None = Field(None, description="LLM backend (None = personas.backend)")
    backend_config: dict[str, Any] | None = Field(None, description="backend config (None = personas.backend_config)")
    llm_threads: int = Field(1, ge=1, description="CPU threads per worker's embedded LLM")
    api_threads: int = Field(1, ge=1, description="threads that score requests in the API process, one torch thread each")
    worker_nice: int = Field(10, ge=0, le=19, description="workers run at lower CPU priority than the API")
    stale_after_s: float | None = Field(
        None, gt=0, description="a persona older than this is refreshed on read even without new events"
    )
    shutdown_grace_s: float = Field(60.0, ge=0, description="how long shutdown waits for in-flight refreshes")
    benchmark_endpoints: bool = Field(
        False, description="enable ?sync_llm=1 (LLM on the request path) for the serving benchmark only"
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API credentials (on unless mode = \"off\")")
    queue: QueueConfig = Field(default_factory=QueueConfig)
    max_history: int | None = Field(
        None,
        ge=1,
        description="most recent events read per request (None = the whole history, as offline evaluation ranks it; a cap makes long histories rank differently)",
    )
    ranking: RankingConfig = Field(
        default_factory=RankingConfig,
        description="persona reranker of a plain model asked for ?explore=...; persona models use their own settings",
    )
