"""Import every built-in recommender so that each registers itself by name."""

from personarec.recommend import ease, itemknn, popular, sasrec  # noqa: F401
from personarec.recommend import persona_sasrec  # noqa: F401
from personarec.recommend import persona_retrieval  # noqa: F401
