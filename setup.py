"""The one part pyproject.toml cannot declare: the C newline scan of the log store.

``optional``: where it cannot be built (no compiler), the install goes on without it and the
store finds newlines with numpy instead (engine/logs/store.py), slower but the same.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "lacrimosa.engine.logs._newlines",
            ["engine/logs/_newlines.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
