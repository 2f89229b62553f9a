"""Runs the FastAPI example backend: migrates and seeds the database with the reference backend's
own code (one schema, one demo seed), then serves the app under uvicorn with UVICORN_WORKERS
workers on HOST:PORT. The local stack starts it with backend.kind: fastapi."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def main() -> None:
    # The package is used from the checkout: no install step for the example.
    sys.path[:0] = [str(HERE), str(REPO / "python" / "replyx_publish" / "src")]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO / "python" / "replyx_publish" / "src"), os.environ.get("PYTHONPATH", "")])
    from replyx_fastapi.config import settings_or_exit

    settings = settings_or_exit()
    node = os.environ.get("REPLYX_NODE") or shutil.which("node")
    if node is None:
        print("error RPX_BACKEND_CONFIG: node is not on PATH; the schema and demo data are the reference backend's (examples/fastapi/prepare-db.ts)", file=sys.stderr)
        raise SystemExit(1)
    prepared = subprocess.run([node, "--import", "tsx", str(HERE / "prepare-db.ts")], cwd=REPO, check=False)
    if prepared.returncode != 0:
        raise SystemExit(prepared.returncode)
    import uvicorn

    uvicorn.run(
        "replyx_fastapi.app:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=5,
    )


if __name__ == "__main__":
    main()
