"""Build of the matcher's compiled modules (everything else is in pyproject.toml)."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension(
                "aggregator.cluster_index",
                ["aggregator/cluster_index.pyx"],
                language="c++",
                extra_compile_args=["-O2", "-std=c++17"],
            ),
            Extension(
                "aggregator.cluster_pairs",
                ["aggregator/cluster_pairs.pyx"],
                # No fused multiply-add: scores must be the Python formulas' to the last bit.
                extra_compile_args=["-O2", "-ffp-contract=off"],
            ),
            Extension(
                "aggregator.cluster_tokens",
                ["aggregator/cluster_tokens.pyx"],
                extra_compile_args=["-O2"],
            ),
            Extension(
                "aggregator.token_set",
                ["aggregator/token_set.pyx"],
                # No fused multiply-add: scores must be rapidfuzz's to the last bit.
                extra_compile_args=["-O2", "-ffp-contract=off"],
            ),
            Extension(
                "aggregator.token_codec",
                ["aggregator/token_codec.pyx"],
                extra_compile_args=["-O2"],
            ),
        ],
        compiler_directives={"language_level": "3"},
    )
)
