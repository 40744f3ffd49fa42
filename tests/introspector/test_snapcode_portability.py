"""``_snapcode.c`` must build where its x86-64 block path is not compiled in.

The FNV-1a block paths (AVX-512BW + PCLMUL, VPCLMULQDQ) are compiled only under
``#if defined(__GNUC__) && defined(__x86_64__)``; everywhere else (aarch64, a compiler
that is not GCC-like) the module must still build, with the byte-by-byte FNV-1a: the
extension is ``optional=True`` in ``setup.py``, so a compile error there does not stop
the install, it silently drops the whole accelerator (the encoder's C loops as well).

The target is simulated on this machine: the headers ``_snapcode.c`` includes are
read first (for the real target), then ``__x86_64__`` is undefined and the source
included, so the preprocessor takes the branch a non-x86-64 compiler takes.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

SOURCE = (
    Path(__file__).resolve().parents[2]
    / "src"
    / "libp2p_introspection"
    / "introspector"
    / "_snapcode.c"
)

WRAPPER = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#undef __x86_64__
#include "{source}"
"""


def _compiler() -> str | None:
    configured = (sysconfig.get_config_var("CC") or "").split()
    for name in (configured[:1] or []) + ["cc", "gcc", "clang"]:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(not SOURCE.exists(), reason="no C source in this tree")
@pytest.mark.skipif(_compiler() is None, reason="no C compiler here")
def test_the_c_accelerator_compiles_without_the_x86_64_block_path(tmp_path: Path) -> None:
    wrapper = tmp_path / "non_x86_64.c"
    wrapper.write_text(WRAPPER.format(source=SOURCE.as_posix()), encoding="utf-8")
    compiler = _compiler()
    assert compiler is not None
    done = subprocess.run(
        [
            compiler,
            "-fsyntax-only",
            "-Werror=implicit-function-declaration",
            f"-I{sysconfig.get_paths()['include']}",
            str(wrapper),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
