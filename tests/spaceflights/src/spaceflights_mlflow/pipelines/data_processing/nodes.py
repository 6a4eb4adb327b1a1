"""Cleaning of the three raw tables, and their join into the model input table."""

from __future__ import annotations

import pandas as pd


def _flag(column: pd.Series) -> pd.Series:
    return column.map({"t": True, "f": False}).astype(bool)


def _percent(column: pd.Series) -> pd.Series:
    return column.str.rstrip("%").astype(float) / 100


def _money(column: pd.Series) -> pd.Series:
    return column.str.lstrip("$").str.replace(",", "", regex=False).astype(float)


def preprocess_companies(companies: pd.DataFrame) -> pd.DataFrame:
    out = companies.copy()
    out["iata_approved"] = _flag(out["iata_approved"])
    out["company_rating"] = _percent(out["company_rating"])
    return out


def preprocess_shuttles(shuttles: pd.DataFrame) -> pd.DataFrame:
    out = shuttles.copy()
    out["d_check_complete"] = _flag(out["d_check_complete"])
    out["moon_clearance_complete"] = _flag(out["moon_clearance_complete"])
    out["price"] = _money(out["price"])
    return out


def create_model_input_table(
    shuttles: pd.DataFrame, companies: pd.DataFrame, reviews: pd.DataFrame
) -> pd.DataFrame:
    table = shuttles.merge(reviews, left_on="id", right_on="shuttle_id")
    table = table.drop(columns="id").merge(
        companies, left_on="company_id", right_on="id"
    )
    return table.dropna()
