"""Only the C extension lives here; everything else is in pyproject.toml.

It is optional: without a C compiler the install still succeeds and SimExchange.on_candle,
the reference implementation, is used.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # SimExchange.on_candle's everyday path (infra/exchange/sim.py has the reference).
        Extension(
            "infra.exchange._simcandle",
            sources=["infra/exchange/_simcandle.c"],
            extra_compile_args=["-O2", "-ffp-contract=off"],
            optional=True,
        ),
    ]
)
