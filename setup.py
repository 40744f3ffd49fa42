"""Build of the optional C accelerators; everything else is in pyproject.toml.

``libp2p_introspection.protocol._wirewalk`` (the wire walk in C) and
``libp2p_introspection.introspector._snapcode`` (the incremental snapshot
encoder's hot loops in C) are built where a C compiler is found; without one
the build carries on and the pure-Python code, which is the reference, is
used instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "libp2p_introspection.protocol._wirewalk",
            ["src/libp2p_introspection/protocol/_wirewalk.c"],
            optional=True,
        ),
        Extension(
            "libp2p_introspection.introspector._snapcode",
            ["src/libp2p_introspection/introspector/_snapcode.c"],
            optional=True,
        ),
    ]
)
