"""Regenerate the committed Python stubs from protos/jobbroker/v1.

python scripts/gen_protos.py          # rewrite clients/python/jobbroker/v1
python scripts/gen_protos.py --check  # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
OWN_PROTOS = PROTO_ROOT / "jobbroker"
OUT_PACKAGE = ROOT / "clients" / "python" / "jobbroker" / "v1"
INIT = '"""Generated gRPC stubs of jobbroker.v1 (do not edit; run scripts/gen_protos.py)."""\n'


def _plugin(name: str) -> str:
    found = shutil.which(name) or str(Path(sysconfig.get_path("scripts")) / name)
    if not Path(found).exists():
        sys.exit(f"{name} not found: install the project's dev dependencies (mypy-protobuf)")
    return found


def generate(out_root: Path) -> None:
    # Only our package: the vendored google/rpc and grpc/health protos beside it are for other
    # languages' generators; Python gets them from googleapis-common-protos and
    # grpcio-health-checking.
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in OWN_PROTOS.rglob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO_ROOT)
    (out_root / "jobbroker" / "v1" / "__init__.py").write_text(INIT)


def _differences(fresh: Path, committed: Path) -> list[str]:
    fresh_files = {p.name for p in fresh.iterdir() if p.is_file()}
    committed_files = (
        {p.name for p in committed.iterdir() if p.is_file()} if committed.exists() else set()
    )
    diffs = sorted(fresh_files ^ committed_files)
    for name in sorted(fresh_files & committed_files):
        if not filecmp.cmp(fresh / name, committed / name, shallow=False):
            diffs.append(name)
    return diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if the committed stubs are stale"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out_root = Path(tmp)
        generate(out_root)
        fresh = out_root / "jobbroker" / "v1"
        if args.check:
            diffs = _differences(fresh, OUT_PACKAGE)
            if diffs:
                print("stale generated stubs, run scripts/gen_protos.py:", ", ".join(diffs))
                return 1
            print("generated stubs are up to date")
            return 0
        OUT_PACKAGE.mkdir(parents=True, exist_ok=True)
        for old in OUT_PACKAGE.iterdir():
            if old.is_file():
                old.unlink()
        for new in fresh.iterdir():
            if new.is_file():
                shutil.copy2(new, OUT_PACKAGE / new.name)
    print(f"wrote {OUT_PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
