"""Regenerate the Python code of the public API from proto/ (``python -m service.protogen``).

The generated modules live in ``service/_pb`` and are committed. ``--check``
regenerates into a temporary directory and fails when the committed copy is
stale, so a test can catch a .proto edited without regenerating.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "service" / "_pb"
# protoc writes imports as ``from kairos.v1 import x_pb2``; the package lives
# under service._pb, so rewrite them.
_IMPORT = re.compile(r"^from kairos\.v1 import ", re.MULTILINE)
_IMPORT_REWRITE = "from service._pb.kairos.v1 import "


def tool(name: str) -> str | None:
    """An executable installed beside this interpreter (a venv's bin, on PATH or not), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _plugins() -> list[str]:
    # `.venv/bin/python -m pytest` runs without the venv's bin on PATH, where protoc looks for plugins.
    found = [(name, tool(f"protoc-gen-{name}")) for name in ("mypy", "mypy_grpc")]
    return [f"--plugin=protoc-gen-{name}={path}" for name, path in found if path is not None]


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # dev dependency: only needed to regenerate

    include = Path(protoc.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    args = [
        "protoc",
        *_plugins(),
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in out_dir.rglob("*.py*"):
        text = path.read_text()
        path.write_text(_IMPORT.sub(_IMPORT_REWRITE, text))
    for package in {p.parent for p in out_dir.rglob("*_pb2.py")} | {out_dir, out_dir / "kairos"}:
        (package / "__init__.py").touch()


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def check() -> list[str]:
    """Return the generated files that differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = _files(fresh), _files(OUT_DIR)
        stale = sorted(str(p) for p in want ^ have)
        stale += sorted(str(p) for p in want & have if not filecmp.cmp(fresh / p, OUT_DIR / p, shallow=False))
        return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if service/_pb is stale instead of rewriting it")
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        if stale:
            print("service/_pb is stale; run `python -m service.protogen`:", *stale, sep="\n  ", file=sys.stderr)
            return 1
        print("service/_pb is up to date")
        return 0
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    OUT_DIR.mkdir(parents=True)
    generate(OUT_DIR)
    print(f"generated {len(_files(OUT_DIR))} files in {OUT_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
