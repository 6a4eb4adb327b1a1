"""The project's pipelines: ``etl`` (data), ``ml_app`` (model), ``user_app`` (business)."""
