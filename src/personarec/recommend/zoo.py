"""Import every built-in recommender so that each registers itself by name."""

from personarec.recommend import (  # noqa: F401
    ease,
    itemknn,
    persona_hybrid,
    persona_retrieval,
    persona_sasrec,
    popular,
    sasrec,
)
