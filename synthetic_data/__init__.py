"""The worked example's source system: synthetic card transactions, user profiles and the daily
aggregates job's output, written as the Parquet files the Feast repo reads.

It is example data, not pipeline code: the components never import it. `portside data
generate` writes it; the tests and benchmarks generate their inputs with it.
"""

from portside.synthetic_data.transactions import (
    DriftScenario,
    GeneratedData,
    SyntheticDataConfig,
    generate,
)

__all__ = ["DriftScenario", "GeneratedData", "SyntheticDataConfig", "generate"]
