"""What serving loads from a run directory, once per process: split, item space, trained model.

A user's *live history* is their offline history (the split's events up to the personas' history
stage) followed by the events acknowledged by the API and kept in the store. Sequence numbers
continue the offline history (event ``seq`` = its position in the live history), so a persona
built from the first ``v`` events has version ``v`` whether it was written offline or online.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from personarec.data.splits import Split, UserSequences
from personarec.errors import DataError
from personarec.items.space import ItemSpace
from personarec.recommend.base import Recommender
from personarec.recommend.persona_ranking import RankingConfig
from personarec.recommend.pipeline import RankingPipeline
from personarec.personas.store.base import ServingStore, StoredEvent, UserState


@dataclass
class LiveHistory:
    """One user's chronological items (item indices) as serving sees them."""

    user_id: str
    user_idx: int  # index in the split, or -1 for a user the offline data never saw
    items: np.ndarray  # int32
    timestamps: np.ndarray  # int64
    last_seq: int  # == len(items) when nothing was trimmed


@dataclass
class ServingAssets:
    split: Split
    space: ItemSpace
    base: UserSequences  # offline histories (training [+ validation] events)
    model: Recommender | None = None
    model_name: str | None = None
    user_index: dict[str, int] = field(default_factory=dict)
    item_index: dict[str, int] = field(default_factory=dict)
    cluster_index: dict[str, int] = field(default_factory=dict)
    titles: list[str] = field(default_factory=list)
    pipeline: RankingPipeline | None = None  # the model's ranking pipeline (None: no model loaded)

    @classmethod
    def load(
        cls, run_dir: str | Path, *, stage: str = "test", model: str | None = None, with_model: bool = True,
        ranking: RankingConfig | None = None,
    ) -> ServingAssets:  # fmt: skip
        from personarec.recommend.service import RunService

        service = RunService(run_dir)  # no config: serving passes each request's persona itself
        if service.items is None:
            raise DataError(f"no item space in {service.path / 'items'}; run `personarec items build` first")
        name = (model or service.default_model()) if with_model else None
        recommender = service.model(name) if name is not None else None
        return cls.build(service.split, service.items, recommender, name, stage=stage, ranking=ranking)

    @classmethod
    def build(
        cls, split: Split, space: ItemSpace, model: Recommender | None = None, model_name: str | None = None, *,
        stage: str = "test", ranking: RankingConfig | None = None,
    ) -> ServingAssets:  # fmt: skip
        base = split.history("test") if stage == "test" else split.history("train")
        titles = [str(t) for t in split.catalogue.frame["title"].to_list()] if "title" in split.catalogue.frame.columns else []
        return cls(
            split=split, space=space, base=base, model=model, model_name=model_name or (model.name if model else None),
            user_index=split.user_index(), item_index=split.item_index(), cluster_index=space.cluster_by_name(),
            titles=titles, pipeline=RankingPipeline(model, space, ranking) if model is not None else None,
        )  # fmt: skip

    @property
    def added_topic_weight(self) -> float:
        return self.pipeline.added_topic_weight if self.pipeline is not None else RankingConfig().added_topic_weight

    @property
    def n_items(self) -> int:
        return self.split.n_items

    def base_len(self, user_id: str) -> int:
        u = self.user_index.get(user_id)
        return 0 if u is None else int(self.base.indptr[u + 1] - self.base.indptr[u])

    def is_known(self, user_id: str, state: UserState | None) -> bool:
        """A user exists for serving if the offline data has them (and they were not erased) or
        the store holds events for them."""
        if state is not None:
            return state.last_seq > 0 or (not state.erased and user_id in self.user_index)
        return user_id in self.user_index

    def live_history(
        self,
        user_id: str,
        store: ServingStore,
        state: UserState | None = None,
        *,
        max_len: int | None = None,
        upto_seq: int | None = None,
    ) -> LiveHistory:
        """Offline history (unless erased) + stored events up to ``upto_seq`` (a refresh job's
        target; None = all), trimmed to the last ``max_len``."""
        state = state if state is not None else store.user_state(user_id)
        u = self.user_index.get(user_id, -1)
        erased = state is not None and state.erased
        if u >= 0 and not erased:
            lo, hi = int(self.base.indptr[u]), int(self.base.indptr[u + 1])
            base_items, base_ts = self.base.items[lo:hi], self.base.timestamps[lo:hi]
        else:
            base_items, base_ts = np.zeros(0, np.int32), np.zeros(0, np.int64)
        base_len = state.base_len if state is not None else len(base_items)
        last_seq = state.last_seq if state is not None else len(base_items)
        after = base_len if max_len is None else max(base_len, last_seq - max_len)
        events: list[StoredEvent] = store.events(user_id, after_seq=after) if last_seq > base_len else []
        if upto_seq is not None:
            events = [e for e in events if e.seq <= upto_seq]
            last_seq = min(last_seq, upto_seq)
        ev_items = np.fromiter((self.item_index.get(e.item_id, -1) for e in events), dtype=np.int32, count=len(events))
        ev_ts = np.fromiter((e.timestamp for e in events), dtype=np.int64, count=len(events))
        keep = ev_items >= 0  # an item removed from the catalogue since the event was stored
        items = np.concatenate([base_items[: base_len], ev_items[keep]]).astype(np.int32, copy=False)
        ts = np.concatenate([base_ts[: base_len], ev_ts[keep]]).astype(np.int64, copy=False)
        if max_len is not None and len(items) > max_len:
            items, ts = items[-max_len:], ts[-max_len:]
        return LiveHistory(user_id=user_id, user_idx=u if not erased else -1, items=items, timestamps=ts, last_seq=last_seq)


def limit_model_threads(model: Recommender, threads: int) -> None:
    """Serving scores one short sequence per request: one thread per request is fastest and
    keeps the API from fighting the refresh workers for cores (models with a ``num_threads``
    knob set it on every call)."""
    if "num_threads" in type(model.config).model_fields:
        model.config.num_threads = threads  # type: ignore[attr-defined]
    base = getattr(model, "base", None)  # a persona model scores through its base model (e.g. SASRec)
    if base is not None and base is not model and hasattr(base, "config"):
        limit_model_threads(base, threads)
