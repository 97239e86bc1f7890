"""Command-line interface (``covertml --help``)."""
