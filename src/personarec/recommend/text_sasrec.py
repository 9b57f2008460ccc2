"""Text-aware SASRec (``text_sasrec``): item representations from the item text, UniSRec-style.

SASRec learns one free vector per item, so an item with few training events gets a poor vector
and an item with none (a cold item) gets a vector that the full-softmax loss only ever pushed
down. On sparse, text-rich catalogues (Amazon) that is most of the tail. Here each item's vector
is computed from its frozen sentence embedding (the item space's MiniLM vectors, built from the
catalogue's title/category/brand/description) through a learned parametric whitening, as UniSRec
(Hou et al., KDD 2022) does: ``W (text - b)``; optionally plus an ID embedding for items seen in
training (``item_ids = "warm"``), so dense catalogues keep what IDs capture. A cold item is scored
from its text alone and can be recommended. The hidden size is 128, twice SASRec's: the item vectors
carry the 384-d text, and 64 dimensions squeezed it (P5 Beauty NDCG@10 +8.4 % over SASRec at 64,
+13.4 % at 128; SASRec itself gains nothing from 128). ``code_levels`` optionally adds learned
embeddings of the item's semantic-ID prefixes (off by default: on three Beauty seeds it gained on
validation every time and +3.0 % on test; on three Office seeds it lost on validation and test).

A cold item's text-only score is on another scale than a warm item's text+ID score (the ID part is
what training fitted best), so it rarely reaches a top 10. ``cold_calibration`` adds one offset to
every cold item's score, chosen after training on the validation split (never the test split): a
multiple of the standard deviation of the user's scores (so it follows each user's score scale),
the one with the best validation NDCG@10 under the protocol card, ties to the smallest. It stays 0
without a cold validation target, or when the best offset gains less than one validation user's
hit (1 / n_users of NDCG): on P5 Beauty -0.5 std gained 3e-6, noise.

Everything else (causal blocks, full-softmax loss, early stopping under the protocol card,
serving) is :class:`~personarec.recommend.sasrec.SASRec`'s: only the item table differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

import numpy as np
import torch
from pydantic import Field
from torch import nn

from personarec.data.splits import Split
from personarec.errors import ConfigError
from personarec.items.space import ItemSpace
from personarec.recommend.base import FitContext, mask_seen, ndcg_gains, register, target_ranks
from personarec.recommend.sasrec import SASRec, SASRecConfig, SASRecNet


class TextSASRecConfig(SASRecConfig):
    hidden: int = Field(
        128,
        ge=1,
        description="embedding / hidden size: twice SASRec's, as the item vectors carry the 384-d item text",
    )  # P5 Beauty seed 0, validation NDCG@10: 0.0661 at 64, 0.0680 at 128 (ID-only SASRec: 0.0603, 0.0604)
    item_ids: Literal["none", "warm", "all"] = Field(
        "warm",
        description="ID embeddings added to the text vector: none (text only, fully inductive); warm (items "
        "with training events; cold items use text alone); all (every item, cold ones included)",
    )
    text_dropout: float = Field(0.1, ge=0, lt=1, description="dropout on the projected text vectors while training")
    id_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of items whose ID embedding is dropped at each training step, so the model also learns to "
        "rank items by their text alone, as it must rank cold items (DropoutNet's idea)",
    )
    negatives: Literal["warm", "all"] = Field(
        "warm",
        description="items the training softmax ranks targets against: warm (items with training events: a cold item "
        "is treated as what it is in production, an item that did not exist at training time) or all (cold items are "
        "pushed down as negatives at every step, which teaches the model never to recommend them)",
    )
    code_levels: int = Field(
        0,
        ge=0,
        le=8,
        description="add learned embeddings of the item's first 1..code_levels semantic-ID prefixes (the item "
        "space's RQ-KMeans codes; 0 = off): items that share a prefix share a vector, so a rare or cold item borrows "
        "what its semantic neighbours learned (Singh et al. 2023, semantic-ID prefix embeddings)",
    )
    cold_calibration: bool = Field(
        True,
        description="after training, add to every cold item's score the offset with the best validation NDCG@10 "
        "(0 when no validation target is cold), so text-only scores compete with warm items' text+ID scores",
    )


#: candidate cold-item offsets, in standard deviations of the user's scores over the catalogue
COLD_OFFSET_GRID = (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


class TextSASRecNet(SASRecNet):
    """:class:`SASRecNet` whose item table is ``W (text - b)`` (+ the ID embedding of warm items)."""

    def __init__(
        self, n_items: int, cfg: TextSASRecConfig, text: np.ndarray, warm: np.ndarray, prefixes: np.ndarray | None = None
    ) -> None:
        super().__init__(n_items, cfg)
        if text.shape[0] != n_items:
            raise ConfigError(f"text vectors for {text.shape[0]} items, the model scores {n_items}")
        self.register_buffer("text", torch.as_tensor(text, dtype=torch.float32), persistent=False)  # saved as text.npy
        id_mask = {"none": np.zeros(n_items), "warm": np.asarray(warm, dtype=np.float32), "all": np.ones(n_items)}
        self.register_buffer("id_mask", torch.as_tensor(id_mask[cfg.item_ids], dtype=torch.float32)[:, None], persistent=False)
        self.text_centre = nn.Parameter(self.text.mean(dim=0).clone())  # the whitening's learned b
        self.text_proj = nn.Linear(text.shape[1], cfg.hidden, bias=False)
        nn.init.normal_(self.text_proj.weight, std=cfg.hidden**-0.5)  # the scale of the ID embeddings
        self.text_dropout = nn.Dropout(cfg.text_dropout)
        self.code_emb: nn.EmbeddingBag | None = None
        if prefixes is not None:  # code_levels >= 1 (prefix_rows gives None for 0)
            if prefixes.shape[0] != n_items:
                raise ConfigError(f"semantic-ID prefixes for {prefixes.shape[0]} items, the model scores {n_items}")
            self.register_buffer("prefixes", torch.as_tensor(prefixes, dtype=torch.long), persistent=False)
            # zero at start: a prefix that no training item carries (only cold items) stays neutral
            self.code_emb = nn.EmbeddingBag(int(prefixes.max()) + 1, cfg.hidden, mode="sum")
            nn.init.zeros_(self.code_emb.weight)
        self.id_dropout = cfg.id_dropout
        self.step_mask: torch.Tensor | None = None  # this training step's ID mask (input and output agree)
        self.step_projection: torch.Tensor | None = None  # this training step's projected text (input and output)
        self.frozen_table: tuple[tuple[tuple[int, int], ...], torch.Tensor] | None = None  # (parameter versions, table)

    def new_step(self) -> None:
        """Start a training step: draw the items whose ID embedding it drops (``id_dropout``) and
        forget the previous step's text projection (its parameters have moved)."""
        keep = torch.rand_like(self.id_mask) >= self.id_dropout
        self.step_mask = self.id_mask * keep if self.id_dropout > 0 else None
        self.step_projection = None

    def item_table(self) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return self._project_items()
        # inference: the table is a function of the parameters alone, so scoring reuses it until one
        # of them changes (an optimiser step or load_state_dict bumps the tensor's version counter)
        versions = tuple((p.data_ptr(), p._version) for p in self.parameters())
        if self.frozen_table is None or self.frozen_table[0] != versions:
            self.frozen_table = (versions, self._project_items())
        return self.frozen_table[1]

    def _project_items(self) -> torch.Tensor:
        # projecting the whole catalogue is the costliest part of a step: a training step computes it
        # once for the input embeddings and the output layer, each of which draws its own text dropout
        projection = self.step_projection if self.training else None
        if projection is None:
            # W (text - b) as W text - W b: the same vectors, but the gradient of b is a sum over
            # W's rows, not a [n_items, d] matrix (a third of the projection's cost per step)
            projection = self.text_proj(self.text) - self.text_proj(self.text_centre)
            if self.training:
                self.step_projection = projection
        items = self.text_dropout(projection)
        id_mask = self.step_mask if self.training and self.step_mask is not None else self.id_mask
        items = items + self.item_emb.weight[1:] * id_mask
        if self.code_emb is not None:
            items = items + self.code_emb(self.prefixes)
        return torch.cat([items.new_zeros(1, items.shape[1]), items])


def prefix_rows(semantic_ids: np.ndarray, levels: int) -> np.ndarray | None:
    """Each item's semantic-ID prefixes of length 1..``levels`` as rows of one embedding table
    ``int64 [n_items, levels]``: prefix ``(c1, .., cl)`` gets the same row for every item that
    carries it, and distinct prefixes (of any length) distinct rows. None when ``levels`` is 0."""
    if levels == 0:
        return None
    codes = np.asarray(semantic_ids)
    if codes.ndim != 2 or codes.shape[1] < levels:
        raise ConfigError(f"code_levels={levels}, the item space's semantic IDs have {codes.shape[-1]} digits")
    rows, offset = [], 0
    for length in range(1, levels + 1):
        _, index = np.unique(codes[:, :length], axis=0, return_inverse=True)
        index = index.reshape(-1)
        rows.append(index + offset)
        offset += int(index.max()) + 1
    return np.stack(rows, axis=1).astype(np.int64)


@register
class TextSASRec(SASRec):
    name = "text_sasrec"
    config_class = TextSASRecConfig

    def __init__(self, config: TextSASRecConfig | None = None) -> None:
        super().__init__(config)
        self.text: np.ndarray | None = None  # float32 [n_items, d] frozen item text vectors
        self.warm: np.ndarray | None = None  # bool [n_items]: item has training events
        self.prefixes: np.ndarray | None = None  # int [n_items, code_levels]: row of each semantic-ID prefix
        self.cold_offset: float = 0.0  # x the user's score std, added to cold items' scores (cold_calibration)
        self.cold_calibration_: dict[str, float] = {}  # validation NDCG@10 per candidate offset

    @property
    def cfg(self) -> TextSASRecConfig:
        return self.config  # type: ignore[return-value]

    def _fit(self, split: Split, ctx: FitContext) -> Self:
        space = ctx.items
        if not isinstance(space, ItemSpace):
            raise ConfigError(
                "text_sasrec reads the item text vectors of the item space: build it first (`personarec items "
                "build`) or fit(split, items=ItemSpace)"
            )
        if space.n_items != split.n_items:
            raise ConfigError(f"item space has {space.n_items} items, the split {split.n_items}")
        self.text = np.asarray(space.embeddings, dtype=np.float32)
        self.warm = np.bincount(split.history("train").items, minlength=split.n_items) > 0
        self.prefixes = prefix_rows(space.semantic_ids, self.cfg.code_levels)
        self.cold_offset, self.cold_calibration_ = 0.0, {}
        super()._fit(split, ctx)
        if self.cfg.cold_calibration and self.cfg.early_stopping:
            self._calibrate_cold_offset(split)
        return self

    def _calibrate_cold_offset(self, split: Split) -> None:
        """Choose :attr:`cold_offset` on the validation split (see the module docstring)."""
        assert self.warm is not None
        cold = ~self.warm
        users = split.eval_users("valid")
        history, targets = split.history("train"), split.targets("valid")
        if not cold.any() or not len(users) or not cold[targets.items[targets.indptr[users]]].any():
            return  # no cold validation target: nothing to calibrate on, the offset stays 0
        k = self.cfg.eval_k
        gains = np.zeros((len(COLD_OFFSET_GRID), len(users)))
        for b in range(0, len(users), self.cfg.infer_batch_size):
            batch = users[b : b + self.cfg.infer_batch_size]
            base = super()._score_seqs([history[int(u)][-self.cfg.max_len :] for u in batch])
            spread = base.std(axis=1, keepdims=True)
            if self.exclude_seen:
                mask_seen(base, batch, history)
            goal = targets.items[targets.indptr[batch]]
            for i, multiple in enumerate(COLD_OFFSET_GRID):
                scores = base.copy()
                scores[:, cold] += multiple * spread
                gains[i, b : b + len(batch)] = ndcg_gains(target_ranks(scores, goal), k)
        means = gains.mean(axis=1)
        best = max(range(len(COLD_OFFSET_GRID)), key=lambda i: (round(float(means[i]), 12), -abs(COLD_OFFSET_GRID[i])))
        # a gain worth less than one validation user's hit at rank 1 is noise: keep the model as trained
        zero = COLD_OFFSET_GRID.index(0.0)
        self.cold_offset = COLD_OFFSET_GRID[best] if means[best] - means[zero] > 1.0 / len(users) else 0.0
        self.cold_calibration_ = {f"{m:g}": float(v) for m, v in zip(COLD_OFFSET_GRID, means, strict=True)}

    def _score_seqs(self, seqs: list[np.ndarray]) -> np.ndarray:
        scores = super()._score_seqs(seqs)
        if self.cold_offset and self.warm is not None:
            scores[:, ~self.warm] += self.cold_offset * scores.std(axis=1, keepdims=True)
        return scores

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.net, TextSASRecNet)
        self.net.new_step()
        return super().training_loss(inputs, targets, users)

    def loss_candidates(self) -> torch.Tensor | None:
        if self.cfg.negatives == "all" or self.warm is None:
            return None
        return torch.from_numpy(self.warm)  # a view, no copy

    def _make_net(self, n_items: int) -> SASRecNet:
        if self.text is None or self.warm is None:
            raise ConfigError("text_sasrec has no item text vectors: fit it with the item space, or load a saved one")
        return TextSASRecNet(n_items, self.cfg, self.text, self.warm, self.prefixes)

    def _save_state(self, directory: Path) -> None:
        super()._save_state(directory)
        assert self.text is not None and self.warm is not None
        np.save(directory / "text.npy", self.text)
        np.save(directory / "warm.npy", self.warm)
        np.save(directory / "cold_offset.npy", np.float64(self.cold_offset))
        if self.prefixes is not None:
            np.save(directory / "prefixes.npy", self.prefixes)

    def _load_state(self, directory: Path) -> None:
        self.text = np.load(directory / "text.npy")
        self.warm = np.load(directory / "warm.npy")
        offset_path = directory / "cold_offset.npy"
        self.cold_offset = float(np.load(offset_path)) if offset_path.exists() else 0.0
        prefix_path = directory / "prefixes.npy"
        self.prefixes = np.load(prefix_path) if prefix_path.exists() else None
        super()._load_state(directory)
