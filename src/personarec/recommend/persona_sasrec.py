"""Persona-distilled SASRec: LLM user profiles as a training-time teacher, no LLM at serving time.

Following the seed paper (arXiv 2604.21536), every user's persona text is embedded once with a
sentence model; a learned linear map projects it into SASRec's hidden size, and an auxiliary loss
pulls the pooled hidden state of the user's training window towards it::

    loss = CE(next item)  +  alpha * aux(pool(h_layer), W · e_persona)      (epochs 1..aux_epochs)
    loss = CE(next item)                                                    (later epochs)

``aux`` is ``1 - cosine``, MSE, or in-batch InfoNCE (which cannot be satisfied by one direction
shared by all users, the failure mode of the other two when personas are alike); ``pool`` is the mean / last / learned-query attention pooling of
the real (non-padding) positions of block ``layer``'s output (``-1``: the final hidden states, the
ones that are scored). Both terms come from one forward pass. The projection (and the attention
query) live on the net as ``net.persona_head`` so they are optimised, early-stopped, checkpointed
and saved with it, but scoring never touches them: a loaded model scores exactly like SASRec and
needs no personas.

Leakage: personas are built with :meth:`UserProfiles.build` at stage ``"valid"``, i.e. from the
training events only; an LLM persona from the store is used only when its version equals the
training-history length (one built from train + validation is ignored).

``fit(split, FitContext)`` reads:

* ``persona_vectors``: float32 ``[n_users, d]`` indexed by the split's user index (used as given);
* otherwise ``persona_profiles`` (a :class:`UserProfiles` of stage ``"valid"``) or, built here,
  ``UserProfiles.build(split, ctx.items, stage="valid", store=ctx.persona_store)``;
  its texts are embedded with ``embedder`` (anything with ``embed(texts, show_progress=)``)
  or a :class:`TextEmbedder` on ``persona_model`` with cache root ``embed_cache``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from personarec.data.splits import Split
from personarec.errors import ConfigError
from personarec.recommend.base import FitContext, register
from personarec.recommend.sasrec import SASRec, SASRecConfig, SASRecNet


class PersonaSASRecConfig(SASRecConfig):
    alpha: float = Field(0.1, ge=0, description="weight of the persona alignment loss (0 = plain SASRec)")
    aux_epochs: int = Field(
        10, ge=0, description="apply the persona loss in the first E epochs only; next-item loss alone afterwards"
    )
    aux_loss: Literal["mse", "cosine", "infonce"] = Field(
        "cosine",
        description="alignment loss: 1 - cosine, mean squared error, or in-batch InfoNCE (each user's pooled state "
        "must be closer to their own persona than to the other users' in the batch: needs per-user signal)",
    )
    temperature: float = Field(0.1, gt=0, description="InfoNCE temperature")
    pooling: Literal["mean", "last", "attention"] = Field(
        "mean", description="pool the real (non-padding) positions: mean, last, or a learned-query attention"
    )
    layer: int = Field(-1, description="self-attention block whose output is pooled (-1 = last: the scored hidden states)")
    persona_stage: Literal["valid"] = Field(
        "valid", description="history the personas describe: 'valid' = training events only (no leakage)"
    )
    persona_model: str | None = Field(
        None, description="sentence model that embeds persona texts (None = the items config default)"
    )

    @model_validator(mode="after")
    def _layer_exists(self) -> PersonaSASRecConfig:
        if not -self.n_blocks <= self.layer < self.n_blocks:
            raise ValueError(f"layer={self.layer} is not a block index for n_blocks={self.n_blocks}")
        return self


class PersonaHead(nn.Module):
    """Training-only parameters: persona projection ``d -> hidden`` and the attention-pool query."""

    def __init__(self, persona_dim: int, hidden: int, attention: bool) -> None:
        super().__init__()
        self.proj = nn.Linear(persona_dim, hidden)
        self.query = nn.Parameter(torch.randn(hidden) * hidden**-0.5) if attention else None


@register
class PersonaSASRec(SASRec):
    name = "persona_sasrec"
    config_class = PersonaSASRecConfig

    def __init__(self, config: PersonaSASRecConfig | None = None) -> None:
        super().__init__(config)
        self.persona_info_: dict[str, Any] = {}
        self._personas: torch.Tensor | None = None  # [n_users, d], only while fitting
        self._acc = [0.0, 0.0, 0]  # epoch sums: aux loss * rows, next-item loss * rows, rows

    @property
    def cfg(self) -> PersonaSASRecConfig:
        return self.config  # type: ignore[return-value]

    # -- personas ------------------------------------------------------------------------
    def persona_vectors(self, split: Split, ctx: FitContext) -> tuple[np.ndarray, dict[str, Any]]:
        """``(float32 [n_users, d], info)`` for ``split`` from ``ctx`` (see module docstring)."""
        given = ctx.persona_vectors
        profiles = ctx.persona_profiles
        if given is not None:
            vectors = np.asarray(given, dtype=np.float32)
            info: dict[str, Any] = {"source": "persona_vectors", "llm_share": None}
            if profiles is not None:
                info["llm_share"] = profiles.llm_share
        else:
            source = "persona_profiles" if profiles is not None else "built"
            if profiles is None:
                from personarec.personas.profiles import UserProfiles

                space = ctx.items
                if space is None:
                    raise ConfigError(
                        "persona_sasrec needs personas: pass context persona_vectors=[n_users, d] or items=ItemSpace "
                        "(run `personarec items build` first)"
                    )
                profiles = UserProfiles.build(split, space, stage=self.cfg.persona_stage, store=ctx.persona_store)
            if profiles.stage != self.cfg.persona_stage:
                raise ConfigError(
                    f"persona_profiles describe stage {profiles.stage!r}; persona_sasrec trains on "
                    f"{self.cfg.persona_stage!r} personas (training events only)"
                )
            embedder = ctx.embedder
            if embedder is None:
                from personarec.items.config import ItemsConfig
                from personarec.items.embed import TextEmbedder

                items_cfg = ItemsConfig() if self.cfg.persona_model is None else ItemsConfig(model=self.cfg.persona_model)
                embedder = TextEmbedder(items_cfg, cache_dir=ctx.embed_cache)
            vectors, _ = embedder.embed(list(profiles.texts), show_progress=self.cfg.show_progress)
            vectors = np.asarray(vectors, dtype=np.float32)
            info = {
                "source": source,
                "llm_share": profiles.llm_share,
                "n_llm": int(np.asarray(profiles.from_llm).sum()),
                "model": getattr(embedder, "model_id", type(embedder).__name__),
            }
        if vectors.ndim != 2 or vectors.shape[0] != split.n_users:
            raise ConfigError(f"persona vectors have shape {vectors.shape}; expected [n_users={split.n_users}, d]")
        if not np.isfinite(vectors).all():
            raise ConfigError("persona vectors contain NaN or inf")
        info.update(stage=self.cfg.persona_stage, n_users=int(vectors.shape[0]), dim=int(vectors.shape[1]))
        return vectors, info

    # -- model ---------------------------------------------------------------------------
    def _build(self, n_items: int) -> SASRecNet:
        net = super()._build(n_items)
        if self._personas is not None:
            self._attach_head(net, int(self._personas.shape[1]))
        return net

    def _attach_head(self, net: SASRecNet, persona_dim: int) -> None:
        # Own RNG stream: creating the head must not shift the net's init or dropout draws, so
        # that alpha=0 trains exactly the SASRec that the same seed gives.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed + 1)
            net.persona_head = PersonaHead(persona_dim, self.cfg.hidden, self.cfg.pooling == "attention")

    def _fit(self, split: Split, ctx: FitContext) -> Self:
        torch.set_num_threads(self.cfg.num_threads)
        vectors, self.persona_info_ = self.persona_vectors(split, ctx)
        self._personas = torch.from_numpy(vectors)
        self._acc = [0.0, 0.0, 0]
        try:
            super()._fit(split, ctx)
        finally:
            self._personas = None  # only training reads them
        return self

    def min_epochs(self) -> int:
        """Early stopping waits for ``patience`` epochs after the persona phase: validation NDCG
        during that phase measures a model still pulled by the auxiliary loss (on ML-latest-small a
        noisy epoch-2 peak otherwise stopped training at epoch 7, inside the phase)."""
        if self.cfg.alpha == 0:
            return self.cfg.min_epochs
        return max(self.cfg.min_epochs, self.cfg.aux_epochs + self.cfg.patience)

    def aux_active(self) -> bool:
        return self.epoch_ <= self.cfg.aux_epochs

    def pool(self, states: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``states [B, L, H]`` pooled over the real positions ``real [B, L]`` -> ``[B, H]``."""
        mode = self.cfg.pooling
        if mode == "last":
            return states[:, -1]  # right-aligned: the last position is always real
        if mode == "mean":
            w = real.to(states.dtype).unsqueeze(-1)
            return (states * w).sum(1) / w.sum(1).clamp_min(1.0)
        assert self.net is not None
        query = self.net.persona_head.query
        logits = (states @ query) / math.sqrt(states.shape[-1])
        weights = torch.softmax(logits.masked_fill(~real, float("-inf")), dim=1)
        return (weights.unsqueeze(-1) * states).sum(1)

    def alignment_loss(self, pooled: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.cfg.aux_loss == "mse":
            return F.mse_loss(pooled, target)
        if self.cfg.aux_loss == "infonce":  # one training window per user: the batch has no duplicates
            logits = F.normalize(pooled, dim=-1) @ F.normalize(target, dim=-1).T / self.cfg.temperature
            return F.cross_entropy(logits, torch.arange(len(pooled), device=pooled.device))
        return (1.0 - F.cosine_similarity(pooled, target, dim=-1)).mean()

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        assert self.net is not None
        if self._personas is None or not self.aux_active():
            return super().training_loss(inputs, targets, users)
        hidden, blocks = self.net.forward_blocks(inputs)  # one pass for both terms
        rec = self.next_item_loss(hidden, targets)
        layer = self.cfg.layer % self.cfg.n_blocks
        states = hidden if layer == self.cfg.n_blocks - 1 else blocks[layer]
        pooled = self.pool(states, inputs != 0)
        target = self.net.persona_head.proj(self._personas[users])
        aux = self.alignment_loss(pooled, target)
        n = len(users)
        self._acc[0] += float(aux.detach()) * n
        self._acc[1] += float(rec.detach()) * n
        self._acc[2] += n
        # alpha=0 still computes aux (a diagnostic in history_) and adds exact zeros to the gradients
        return rec + self.cfg.alpha * aux

    def _epoch_summary(self) -> dict[str, float]:
        aux_sum, rec_sum, n = self._acc
        self._acc = [0.0, 0.0, 0]
        if not n:
            return {"aux_weight": 0.0}
        return {"aux_weight": self.cfg.alpha, "aux_loss": aux_sum / n, "rec_loss": rec_sum / n}

    # -- persistence ---------------------------------------------------------------------
    def _save_state(self, directory: Path) -> None:
        super()._save_state(directory)  # state.pt holds the net and its persona_head
        (directory / "persona_info.json").write_text(json.dumps(self.persona_info_, indent=2, default=str))

    def _load_state(self, directory: Path) -> None:
        state = torch.load(directory / "state.pt", weights_only=True)
        net = self._build(self.n_items)  # no personas at load time: the head is rebuilt from its shape
        if "persona_head.proj.weight" in state:
            self._attach_head(net, int(state["persona_head.proj.weight"].shape[1]))
        net.load_state_dict(state)
        net.eval()
        info = directory / "persona_info.json"
        self.persona_info_ = json.loads(info.read_text()) if info.exists() else {}
