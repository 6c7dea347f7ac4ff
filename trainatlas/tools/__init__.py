"""The analysis: pure functions over the DuckDB catalog (no torch), shared by the CLI and the MCP server."""
