"""The one build step pyproject.toml cannot declare: the optional C extension.

Every piece of metadata lives in pyproject.toml; this file only adds ``collector._native``
(``collector/_native.c``: the module and the steady-state value pass of ``IncrementalParser``;
``collector/_native_append.c``: the scrape cache's bulk append and the remote-write encoder's
commit loop; ``collector/_native_labels.c``: that loop for a destination encoding from the
label sets; ``collector/_native.h`` between them). It is
``optional``: where there is no compiler or no Python headers the build says so and installs
the pure-Python package, which `collector.native` then reports as ``off (not built: ...)``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "collector._native",
            ["collector/_native.c", "collector/_native_append.c", "collector/_native_labels.c"],
            depends=["collector/_native.h"],
            optional=True,
        )
    ]
)
