"""Build the Cython extensions.  Metadata and dependencies live in pyproject.toml.

Every ``src/crossbook/**/*.pyx`` becomes an extension compiled with one set of directives.
``CROSSBOOK_DEBUG=1`` builds with bounds checks, wraparound and line tracing on, for debugging
and coverage of the compiled code.
"""
import glob
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("CROSSBOOK_DEBUG", "") not in ("", "0")

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": not DEBUG,
    "initializedcheck": DEBUG,
    "embedsignature": True,
}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
compile_args = ["-O0", "-g"] if DEBUG else ["-O3"]
if DEBUG:
    directives.update(linetrace=True, profile=True)
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]


def module_name(path):
    return os.path.splitext(os.path.relpath(path, "src"))[0].replace(os.sep, ".")


extensions = [
    Extension(
        module_name(pyx),
        [pyx],
        include_dirs=[numpy.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
    )
    for pyx in sorted(glob.glob("src/crossbook/**/*.pyx", recursive=True))
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        nthreads=os.cpu_count() or 1,
        build_dir="build/cython",
    )
)
