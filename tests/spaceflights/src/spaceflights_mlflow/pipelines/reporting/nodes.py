"""Two plotly figures (as JSON) and a matplotlib PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objs as go


def capacity_by_type(preprocessed_shuttles: pd.DataFrame) -> pd.DataFrame:
    """The table that PlotlyDataset draws (plotly express, from the catalog)."""
    return (
        preprocessed_shuttles.groupby("shuttle_type")[["passenger_capacity"]]
        .mean()
        .reset_index()
    )


def capacity_figure(preprocessed_shuttles: pd.DataFrame) -> go.Figure:
    table = capacity_by_type(preprocessed_shuttles)
    return go.Figure([go.Bar(x=table["shuttle_type"], y=table["passenger_capacity"])])


def confusion_matrix_plot(companies: pd.DataFrame) -> plt.Figure:
    actual = companies["iata_approved"].eq("t").astype(int)
    predicted = companies["company_rating"].str.rstrip("%").astype(float).gt(80)
    matrix = pd.crosstab(actual, predicted.astype(int))
    figure, axes = plt.subplots(figsize=(4, 3))
    axes.imshow(matrix.to_numpy(), cmap="Blues")
    axes.set_title("Confusion matrix")
    return figure
