"""A run's artifacts, each loaded once: split, item space, persona store and trained models.

The CLI verbs (``train``, ``evaluate``, ``serve``, ``demo``) and the API only parse their input
and call this; it is the one loader of trained models, so every consumer gets a model the same
way: read from ``RUN_DIR/models/<name>/``, with the run's persona store attached to persona
models (stores are live resources, never saved with a model). Training goes through it too, so a
model trained in this process is the object that is evaluated, not a reload.
"""

from __future__ import annotations

import json

import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personarec.data.splits import Split
from personarec.errors import ConfigError, DataError
from personarec.recommend.base import FitContext, Recommender, build_recommender, load_recommender, recommender_class
from personarec.recommend.config import RecommendConfig
from personarec.run import RunDir

if TYPE_CHECKING:
    from personarec.config import RunConfig
    from personarec.items.space import ItemSpace
    from personarec.personas.store.base import PersonaStore

#: the model served when none is named: the persona hybrid keeps the persona in the loop
DEFAULT_SERVED = ("persona_hybrid", "sasrec")
_UNSET: Any = object()


class RunService:
    """One run directory's artifacts, loaded lazily and once.

    ``cfg`` is the run's config; without it (serving a finished run) nothing can be trained and
    no offline persona store is attached (serving passes each request's persona itself).
    ``split``/``items`` given by a caller that already holds them are used, not reloaded.
    """

    def __init__(
        self, run_dir: str | Path, cfg: RunConfig | None = None, *, split: Split | None = None,
        items: ItemSpace | None = None, console: Any = None,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.run = RunDir(run_dir, cfg)
        self._split = split
        self._items: Any = items if items is not None else _UNSET
        self._store: Any = _UNSET
        self._models: dict[str, Recommender] = {}
        self.console = console

    @classmethod
    def of(cls, cfg: RunConfig, **kwargs: Any) -> RunService:
        return cls(cfg.run_dir, cfg, **kwargs)

    @property
    def path(self) -> Path:
        return self.run.path

    # -- data and items ---------------------------------------------------------------------
    @property
    def split(self) -> Split:
        """The run's saved split (``RUN_DIR/split``), cut from the configured dataset when absent."""
        if self._split is None:
            if self.cfg is not None:
                from personarec.data.commands import load_or_build_split

                self._split = load_or_build_split(self.cfg.model_copy(update={"run_dir": self.path}))
            elif (self.path / "split" / "protocol.json").exists():
                from personarec.data.splits import load_split

                self._split = load_split(self.path / "split")
            else:
                raise DataError(f"no split in {self.path / 'split'}; run `personarec data split` first")
        return self._split

    @property
    def items(self) -> ItemSpace | None:
        """``RUN_DIR/items`` (None while no item space was built: persona models cannot train)."""
        if self._items is _UNSET:
            from personarec.items.space import ItemSpace

            found = (self.path / "items" / "items.parquet").exists()
            self._items = ItemSpace.load(self.path / "items") if found else None
            if self._items is not None and self._items.n_items != self.split.n_items:
                raise DataError(
                    f"{self.path / 'items'} has {self._items.n_items} items but the split has {self.split.n_items}; rebuild items"
                )
        return self._items

    # -- personas -----------------------------------------------------------------------------
    @property
    def persona_store(self) -> PersonaStore | None:
        """The store ``personarec personas generate`` writes, or None while no persona exists
        (persona models then use every user's fallback persona); a store written under another
        config is refused (see :func:`personarec.personas.commands.check_persona_store`)."""
        if self._store is _UNSET:
            self._store = None
            if self.cfg is not None:
                from personarec.personas.commands import check_persona_store, personas_config, store_url

                url = store_url(self.path, personas_config(self.cfg))
                check_persona_store(self.cfg.model_copy(update={"run_dir": self.path}))
                self._store = url.open() if url.exists() else None
        return self._store

    def fit_context(self) -> FitContext:
        """What persona-aware models read while fitting: the item space and the persona store."""
        return FitContext(items=self.items, persona_store=self.persona_store)

    # -- models -------------------------------------------------------------------------------
    def saved_models(self) -> list[str]:
        root = self.path / "models"
        return sorted(p.parent.name for p in root.glob("*/config.json")) if root.exists() else []

    def default_model(self) -> str:
        """The model served when none is named: the persona hybrid, else SASRec, else the first saved."""
        found = self.saved_models()
        if not found:
            raise DataError(f"no trained model under {self.path / 'models'}; run `personarec train` first")
        return next((n for n in DEFAULT_SERVED if n in found), found[0])

    def model(self, name: str | None = None) -> Recommender:
        """Trained model ``name`` (None: :meth:`default_model`), loaded once, persona store attached."""
        name = name or self.default_model()
        if name not in self._models:
            path = self.path / "models" / name
            if not (path / "config.json").exists():
                raise DataError(f"no trained model {name!r} under {self.path / 'models'} (found: {self.saved_models() or 'none'})")
            model = load_recommender(path)
            if hasattr(model, "attach") and self.persona_store is not None:
                model.attach(persona_store=self.persona_store)
            self._models[name] = model
        return self._models[name]

    def models(self, names: Sequence[str] | None = None, *, train_missing: bool = False) -> dict[str, Recommender]:
        """``names`` (default: every saved model), trained first when missing and ``train_missing``."""
        names = list(names) if names else self.saved_models()
        if not names:
            raise DataError(f"no trained models in {self.path / 'models'}; train some (`personarec train`) or pass --arms")
        missing = [n for n in names if n not in self._models and not (self.path / "models" / n / "config.json").exists()]
        if missing:
            if not train_missing:
                raise DataError(f"no trained model for {missing} in {self.path / 'models'}; run `personarec train` first")
            self._print(f"[yellow]training missing models: {', '.join(missing)}[/]")
            self.train(missing)
        return {n: self.model(n) for n in names}

    def train(self, names: Sequence[str], *, tune: bool = False) -> dict[str, Recommender]:
        """Fit each named model (``recommend.models.<name>`` or a registered name) on the split
        and save it under ``RUN_DIR/models/<name>``; the manifest records each fit.

        A model whose config has ``base_from = "<key>"`` is fitted on top of that model (trained
        earlier in this call, or saved): the persona hybrid re-ranks SASRec's list instead of
        training a second SASRec. ``members_from = ["<key>", ...]`` does the same for the models a
        blend combines. ``tune``: search each model's hyper-parameters on the
        validation split first (:func:`personarec.recommend.tuning.tune`, ``recommend.tuning``)
        and keep the best trial's model; the search is written to ``models/<name>/tuning.json``.
        """
        if self.cfg is None:
            raise ConfigError("training needs the run's config")
        rcfg: RecommendConfig = self.cfg.section("recommend", RecommendConfig)  # type: ignore[assignment]
        context = self.fit_context()
        trained: dict[str, Recommender] = {}
        for key in names:
            cls_name, params = rcfg.model_spec(key)
            cls = recommender_class(cls_name)  # an unknown name is a ConfigError naming the available ones
            base_from = params.pop("base_from", None)
            members_from = params.pop("members_from", None)
            model_context = context if base_from is None else FitContext.of(context, base=self._base(key, str(base_from), trained))
            if members_from is not None:
                members = tuple(self._base(key, str(m), trained, "members_from") for m in members_from)
                model_context = FitContext.of(model_context, members=members)
            fields = cls.config_class.model_fields
            if rcfg.seed_from_run and "seed" in fields and "seed" not in params:
                params["seed"] = self.cfg.seed
            if "checkpoint_path" in fields and "checkpoint_path" not in params:
                params["checkpoint_path"] = str(self.run.file("models", key, "checkpoint.pt"))
            model = build_recommender(cls_name, params)
            with self.run.stage(f"train.{key}", model=cls_name) as entry:
                self._print(f"training [bold]{key}[/] ({cls_name})")
                start = time.perf_counter()
                own_bar = "show_progress" in fields or self.console is None  # models with their own progress bar
                search = None
                if tune:
                    from personarec.recommend.tuning import tune as search_params

                    search = search_params(cls_name, params, self.split, model_context, rcfg.tuning, log=self._print)
                    assert search.model is not None  # no measured trials here: the best was fitted by the search
                    model = search.model
                else:
                    with nullcontext() if own_bar else self.console.status(f"fitting {key}"):
                        model.fit(split=self.split, context=model_context)
                path = model.save(self.run.file("models", key))
                if search is not None:
                    (path / "tuning.json").write_text(json.dumps(search.summary(), indent=2, default=str))
                    entry.update(tuned=True, best_valid_ndcg=round(search.best_value, 5), trials=len(search.trials))
                entry.update(config=model.get_config(), fit_seconds=round(time.perf_counter() - start, 3), path=str(path))
                if hasattr(model, "best_epoch"):
                    entry["best_epoch"] = model.best_epoch
            trained[key] = self._models[key] = model
        return trained

    def _base(self, key: str, base_from: str, trained: dict[str, Recommender], directive: str = "base_from") -> Recommender:
        if base_from in trained:
            return trained[base_from]
        if (self.path / "models" / base_from / "config.json").exists():
            return self.model(base_from)
        raise ConfigError(f"recommend.models.{key}.{directive} names {base_from!r}: train {base_from!r} first (or list it before {key!r})")

    def _print(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)

    def close(self) -> None:
        if self._store not in (_UNSET, None):
            self._store.close()
        self._store = _UNSET
