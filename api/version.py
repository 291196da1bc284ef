"""The version of lacrimosa (``lacrimosa --version``; setuptools reads it from here too)."""

__version__ = "0.2.0"
