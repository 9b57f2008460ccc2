"""The one-line reasons attached to recommended items, in one place.

Every list the system shows (persona hybrid, persona retrieval, a plain model served with a
persona, offline or through the API) says why an item is there with these sentences, so a wording
change is made once and the API, the report and the tests agree.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["interest", "added_topic", "model", "explore"]


def explore_reason(topic: str, why: str = "") -> str:
    """An item from one of the persona's explore topics (``why``: the persona's own reason)."""
    return f"Something new: {topic}. {why}".strip()


def interest_reason(topic: str) -> str:
    return f"Because you like {topic}."


def added_topic_reason(topic: str) -> str:
    return f"You added {topic} to your interests."


def model_reason(model_name: str | None) -> str:
    """An item the model ranked highly that no persona topic accounts for."""
    return f"Ranked highly by the {model_name or 'recommendation'} model for your history."


def describe(
    topic: str,
    *,
    interests: dict[str, float] | set[str] | list[str],
    added: set[str] | list[str],
    explore: dict[str, str],
    fallback_reason: str,
) -> tuple[Kind, str]:
    """Kind and reason of an item of cluster ``topic`` given the persona's (edited) topics: the
    user's own additions first, then interests, explore topics, else the model's reason."""
    if topic in added:
        return "added_topic", added_topic_reason(topic)
    if topic in interests:
        return "interest", interest_reason(topic)
    if topic in explore:
        return "explore", explore_reason(topic, explore[topic])
    return "model", fallback_reason
