"""Only the C extensions live here; everything else is in pyproject.toml.

Both are optional: without a C compiler the install still succeeds and the Python
twins are used (core.features' generated step, infra.feeds' delivery loop), which are the
reference implementations.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "core._candlestep",
            sources=["core/_candlestep.c"],
            # Bit-identical floats with the Python step: no fused multiply-add contraction.
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        ),
        # The replay feed's delivery loop (infra/feeds.py has the same loop in Python).
        Extension(
            "infra._replay",
            sources=["infra/_replay.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
