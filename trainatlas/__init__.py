"""trainatlas: record PyTorch training runs to Parquet, query them with DuckDB, diagnose them over MCP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Observer", "open_catalog", "__version__"]

if TYPE_CHECKING:
    from trainatlas.observer.observer import Observer
    from trainatlas.store.catalog import open_catalog


def __getattr__(name: str) -> Any:
    # Imported on first use: the Observer pulls in torch (the catalog, the CLI and the server must work
    # without it), the catalog pulls in DuckDB (a training script and the server's start need not pay).
    if name == "Observer":
        from trainatlas.observer.observer import Observer

        return Observer
    if name == "open_catalog":
        from trainatlas.store.catalog import open_catalog

        return open_catalog
    raise AttributeError(f"module 'trainatlas' has no attribute {name!r}")
