"""axbench-kedro: the AxBench concept-detection and steering benchmark as a Kedro project."""

__version__ = "0.1.0"
