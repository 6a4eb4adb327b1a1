"""``python -m spaceflights_mlflow``: run the project, as Kedro projects do."""

from kedro.framework.cli import main

if __name__ == "__main__":
    main()
