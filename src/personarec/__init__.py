"""personarec: LLM-written user interest personas for recommender systems, at scale."""

__version__ = "0.1.0"
