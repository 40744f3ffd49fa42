"""Regenerate the Python code of the wire schema.

Usage: ``python scripts/generate_proto.py [OUTPUT_DIR]``

Runs ``protoc`` from the pinned ``grpcio-tools`` (a dev dependency) on
``src/libp2p_introspection/protocol/introspection.proto`` and writes
``introspection_pb2.py`` and ``introspection_pb2.pyi`` next to it, or into
OUTPUT_DIR when given (the staleness test uses that to compare).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent.parent / "src" / "libp2p_introspection" / "protocol"
PROTO_NAME = "introspection.proto"


def generate(out_dir: Path) -> None:
    """Write the generated modules into ``out_dir``; raise RuntimeError if protoc fails."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    rc = protoc.main(
        [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            str(PROTO_DIR / PROTO_NAME),
        ]
    )
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_DIR)
