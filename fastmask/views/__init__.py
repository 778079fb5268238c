"""Views across runs: the terminal board, its HTML page, and `fastmask compare`."""
