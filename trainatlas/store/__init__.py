"""Run layout, Arrow schemas and columns, atomic shards and the DuckDB catalog over them."""
