"""Sentiment of short reviews: a Kedro project tracked and served with kedroflow."""

__version__ = "0.1"
