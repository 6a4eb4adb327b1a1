"""Generate short movie reviews, deterministically and offline.

A real project would read them from a database or an API. Here a seeded random
generator writes them from small word lists, so the whole tutorial runs without a
download and gives the same data on every machine. Some sentences contradict the
review's sentiment and a few labels are flipped, so the model has something to learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

POSITIVE = (
    "great", "excellent", "wonderful", "amazing", "delightful", "superb", "brilliant",
    "enjoyable", "fantastic", "charming", "moving", "perfect", "funny", "beautiful",
    "clever", "touching", "gripping", "stunning", "memorable", "fresh",
)  # fmt: skip
NEGATIVE = (
    "terrible", "awful", "boring", "dull", "poor", "disappointing", "bad", "mediocre",
    "annoying", "weak", "messy", "predictable", "bland", "clumsy", "tedious",
    "forgettable", "lifeless", "silly", "confusing", "painful",
)  # fmt: skip
SUBJECTS = (
    "movie", "plot", "acting", "story", "ending", "soundtrack", "director", "cast",
    "script", "pacing", "film", "hero", "dialogue", "photography", "villain",
)  # fmt: skip
TEMPLATES = (
    "The {subject} was {word}.",
    "I thought the {subject} was really {word}!",
    "Honestly, the {subject} felt {word}.",
    "Really {word} {subject}...",
    "My friends found the {subject} {word}, and so did I.",
    "The {subject} is {word}; I would say it again.",
    "{Word} {subject}.",
    "To be honest, the {subject} was {word}.",
)
SPLITS = ("train", "test", "new")


def generate_reviews(
    size: int, seed: int, *, mixed_rate: float, label_noise: float
) -> pd.DataFrame:
    """Write ``size`` reviews with their true sentiment, reproducibly from ``seed``.

    Args:
        size: Number of reviews.
        seed: Seed of the random generator: the same seed gives the same reviews.
        mixed_rate: Probability that a sentence uses a word of the other sentiment.
        label_noise: Probability that a review's label is flipped (annotation errors).

    Returns:
        A DataFrame with the columns ``text`` and ``label`` ("positive"/"negative").
    """
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(size):
        positive = bool(rng.random() < 0.5)
        sentences = []
        for _ in range(int(rng.integers(1, 4))):
            own, other = (POSITIVE, NEGATIVE) if positive else (NEGATIVE, POSITIVE)
            words = other if rng.random() < mixed_rate else own
            word = str(rng.choice(words))
            template = str(rng.choice(TEMPLATES))
            subject = str(rng.choice(SUBJECTS))
            sentences.append(
                template.format(subject=subject, word=word, Word=word.capitalize())
            )
        if rng.random() < label_noise:
            positive = not positive
        texts.append(" ".join(sentences))
        labels.append("positive" if positive else "negative")
    return pd.DataFrame({"text": texts, "label": labels})


def _reviews(split: str, etl: dict[str, Any]) -> pd.DataFrame:
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split '{split}': run with --params split=<one of {', '.join(SPLITS)}>."
        )
    return generate_reviews(
        int(etl["sizes"][split]),
        seed=int(etl["seed"]) + SPLITS.index(split),
        mixed_rate=float(etl["mixed_rate"]),
        label_noise=float(etl["label_noise"]),
    )


def create_instances(split: str, etl: dict[str, Any]) -> pd.DataFrame:
    """The review texts of ``split``: what the model sees, in training and in production."""
    return _reviews(split, etl)[["text"]]


def create_labels(split: str, etl: dict[str, Any]) -> pd.DataFrame:
    """The sentiments of ``split``, row-aligned with ``instances``: only training needs them."""
    return _reviews(split, etl)[["label"]]
