"""The protocol card: what was evaluated, exactly. Printed and saved with every metric table.

Two numbers are only comparable when their cards agree (dataset checksum, filters, split,
tie-break, candidate set, seen-item masking). See ../shared/PROTOCOL.md for why each matters.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field


class ProtocolCard(BaseModel):
    """Everything a reader needs to reproduce or compare a metric."""

    dataset: str
    domain: str | None = Field(None, description="what the items are ('movie', 'office product'), from the loader")
    checksums: dict[str, str] = Field(default_factory=dict, description="file -> sha256")
    filtering: list[str] = Field(default_factory=list, description="preprocessing steps, in order")
    changes: dict[str, int] = Field(
        default_factory=dict,
        description="what a default filter changed, e.g. dedup_removed_events, dedup_changed_test_targets "
        "(cards saved before this field load with {})",
    )
    split: str = Field(description="e.g. 'leave-one-out' or 'temporal(valid=0.1,test=0.1)'")
    tie_break: str = "events sorted by (user, timestamp, original line order)"
    candidates: str = "full ranking over all items of the filtered catalogue"
    exclude_seen: bool = True
    n_users: int = 0
    n_items: int = 0
    n_train: int = 0
    n_valid: int = 0
    n_test: int = 0

    def lines(self) -> list[str]:
        sums = ", ".join(f"{k}={v[:12]}" for k, v in sorted(self.checksums.items())) or "n/a"
        return [
            f"dataset     : {self.dataset}" + (f" ({self.domain})" if self.domain else ""),
            f"checksums   : {sums}",
            f"filtering   : {'; '.join(self.filtering) or 'none'}",
            f"split       : {self.split}",
            f"tie-break   : {self.tie_break}",
            f"candidates  : {self.candidates}",
            f"seen items  : {'excluded from ranking' if self.exclude_seen else 'kept in ranking'}",
            f"size        : {self.n_users} users, {self.n_items} items, "
            f"{self.n_train} train / {self.n_valid} valid / {self.n_test} test events",
        ]

    def render(self) -> str:
        return "Protocol card\n" + "\n".join("  " + line for line in self.lines())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> ProtocolCard:
        return cls.model_validate_json(Path(path).read_text())
