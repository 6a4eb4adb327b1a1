"""A linear regression of the shuttle price on the model input table."""

from __future__ import annotations

import logging

import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.metrics import max_error, mean_absolute_error, r2_score
from sklearn.model_selection import train_test_split

logger = logging.getLogger(__name__)


def split_data(data: pd.DataFrame, options: dict) -> tuple:
    features = data[options["features"]].astype(float)
    return train_test_split(
        features,
        data["price"],
        test_size=options["test_size"],
        random_state=options["random_state"],
    )


def train_model(X_train: pd.DataFrame, y_train: pd.Series) -> LinearRegression:
    return LinearRegression().fit(X_train, y_train)


def evaluate_model(
    regressor: LinearRegression, X_test: pd.DataFrame, y_test: pd.DataFrame
) -> dict[str, float]:
    predicted = regressor.predict(X_test)
    score = float(r2_score(y_test, predicted))
    logger.info("Model has a coefficient R^2 of %.3f on test data.", score)
    return {
        "r2_score": score,
        "mae": float(mean_absolute_error(y_test, predicted)),
        "max_error": float(max_error(y_test.squeeze(), predicted)),
    }


def predict_prices(regressor: LinearRegression, shuttles: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"price": regressor.predict(shuttles.astype(float))})
