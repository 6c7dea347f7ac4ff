"""trainatlas: record PyTorch training runs to Parquet, query them with DuckDB, diagnose them over MCP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainatlas.store.catalog import open_catalog

__version__ = "0.1.0"
__all__ = ["Observer", "open_catalog", "__version__"]

if TYPE_CHECKING:
    from trainatlas.observer.observer import Observer


def __getattr__(name: str) -> Any:
    # The Observer pulls in torch lazily; the catalog, the CLI and the server must work without it.
    if name == "Observer":
        from trainatlas.observer.observer import Observer

        return Observer
    raise AttributeError(f"module 'trainatlas' has no attribute {name!r}")
