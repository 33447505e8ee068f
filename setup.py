"""Only the compiled candle step lives here; everything else is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and
core.features uses its generated Python step (the reference implementation).
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
        )
    ]
)
