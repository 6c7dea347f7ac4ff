"""Run layout, Arrow schemas, atomic shards and the DuckDB catalog over them."""
