"""Parquet persona sink: a batch job's personas as parquet shards in a folder (``parquet:///dir``).

For batch generation whose consumer is a data pipeline (Spark, DuckDB, a feature store loader),
not the serving API: ``personarec personas generate --engine ray --store parquet:///personas``
(a folder in the run directory; ``parquet:////data/personas`` is absolute, as with SQLite URLs).
The driver is the only writer. Personas are buffered and written as immutable shards of
``shard_rows`` rows (``part-00000.parquet``, ...), each written to a temporary name and renamed,
so a reader or a crash never sees half a shard; a crash loses at most the unflushed buffer, which
the resumed job writes again. Resume reads one small index at open (user, version, fallback flag:
only those columns), so planning a job does not read persona texts.

Version guard as in the other stores: a persona older than the stored one is refused; an equal or
newer one is appended, so a user may have rows in several shards: the row in the highest-numbered
shard is the current one (readers outside this class: take each user's row from the last shard,
or the highest ``version``). Edits are not kept here (serving state belongs in SQLite or Redis);
``delete_user`` rewrites every shard that holds the user (it reads them all: erasure is rare), so
an erased persona leaves no row behind. Not a ``ServingStore``: the API refuses it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from personarec.errors import ConfigError
from personarec.personas.schema import Persona, PersonaEdits
from personarec.personas.store.base import PersonaStore

SCHEMA = {"user_id": pl.Utf8, "version": pl.Int64, "fallback": pl.Boolean, "persona": pl.Utf8}


class ParquetPersonaStore(PersonaStore):
    """Personas as parquet shards in ``directory`` (created if missing)."""

    def __init__(self, directory: str | Path, *, shard_rows: int = 1000) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_rows = shard_rows
        self._buffer: dict[str, Persona] = {}
        # user -> (version, fallback, shard or None while buffered); later shards win
        self._index: dict[str, tuple[int, bool, Path | None]] = {}
        for tmp in self.directory.glob(".part-*.tmp"):  # a shard a crash left half-written
            tmp.unlink()
        shards = self.shards()
        for shard in shards:
            cols = pl.read_parquet(shard, columns=["user_id", "version", "fallback"])
            for u, v, f in cols.iter_rows():
                self._index[u] = (v, f, shard)
        self._next = _number(shards[-1]) + 1 if shards else 0

    def shards(self) -> list[Path]:
        """Shard files in write order (by number: ``part-100000`` comes after ``part-99999``)."""
        return sorted(self.directory.glob("part-*.parquet"), key=_number)

    # -- PersonaStore -----------------------------------------------------------------------------
    def get(self, user_id: str) -> Persona | None:
        if user_id in self._buffer:
            return self._buffer[user_id]
        entry = self._index.get(user_id)
        if entry is None or entry[2] is None:
            return None
        rows = pl.scan_parquet(entry[2]).filter(pl.col("user_id") == user_id).select("persona").collect()
        return Persona.model_validate_json(rows["persona"][-1]) if rows.height else None

    def status(self, user_id: str) -> tuple[int, bool] | None:
        entry = self._index.get(user_id)
        return None if entry is None else (entry[0], entry[1])

    def put(self, persona: Persona) -> bool:
        entry = self._index.get(persona.user_id)
        if entry is not None and entry[0] > persona.version:
            return False
        self._buffer[persona.user_id] = persona
        self._index[persona.user_id] = (persona.version, persona.provenance.fallback, None)
        if len(self._buffer) >= self.shard_rows:
            self.flush()
        return True

    def get_edits(self, user_id: str) -> PersonaEdits | None:
        return None

    def put_edits(self, user_id: str, edits: PersonaEdits) -> None:
        raise ConfigError("a parquet persona sink keeps generated personas only; edits live in the serving store (sqlite or redis)")

    def delete_user(self, user_id: str) -> bool:
        found = self._buffer.pop(user_id, None) is not None
        for shard in self.shards():
            frame = pl.read_parquet(shard)
            kept = frame.filter(pl.col("user_id") != user_id)
            if kept.height != frame.height:
                found = True
                if kept.height:
                    self._write(kept, shard)
                else:
                    shard.unlink()
        self._index.pop(user_id, None)
        return found

    def user_ids(self) -> Iterator[str]:
        return iter(sorted(self._index))

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._index

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        self.flush()

    # -- shards -----------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the buffered personas as the next shard."""
        if not self._buffer:
            return
        personas = list(self._buffer.values())
        frame = pl.DataFrame(
            {
                "user_id": [p.user_id for p in personas],
                "version": [p.version for p in personas],
                "fallback": [p.provenance.fallback for p in personas],
                "persona": [p.model_dump_json() for p in personas],
            },
            schema=SCHEMA,
        )
        shard = self.directory / f"part-{self._next:08d}.parquet"
        self._next += 1
        self._write(frame, shard)
        for p in personas:
            self._index[p.user_id] = (p.version, p.provenance.fallback, shard)
        self._buffer.clear()

    @staticmethod
    def _write(frame: pl.DataFrame, shard: Path) -> None:
        """Write to a temporary name, fsync, rename, fsync the folder: all or nothing on disk."""
        tmp = shard.with_name(f".{shard.name}.tmp")
        frame.write_parquet(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, shard)
        fd = os.open(shard.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _number(shard: Path) -> int:
    return int(shard.stem.split("-", 1)[1])
