"""The ``spikedistill`` command line; each command is one module (``add_parser`` + ``run``)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
