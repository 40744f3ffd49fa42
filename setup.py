"""Build of the optional C accelerator; everything else is in pyproject.toml.

``libp2p_introspection.protocol._wirewalk`` (the wire walk in C) is built
where a C compiler is found; without one the build carries on and the
pure-Python walk, which is the reference, is used instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "libp2p_introspection.protocol._wirewalk",
            ["src/libp2p_introspection/protocol/_wirewalk.c"],
            optional=True,
        )
    ]
)
