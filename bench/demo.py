"""`make demo`: serve the sample site on 127.0.0.1:8765, ingest it with the local model into embedded
Chroma (crawls/demo.yaml), and answer a sample question from it. No server, key or internet needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.serve import StaticServer

HERE = Path(__file__).resolve().parent
PORT = 8765  # crawls/demo.yaml names this port


def main() -> int:
    """Serve, ingest, query; returns the exit code."""
    question = json.loads((HERE / "site_questions.json").read_text())[0]["question"]
    try:
        server = StaticServer(HERE / "site", PORT).start()
    except OSError as exc:
        print(f"error: cannot serve the sample site on 127.0.0.1:{PORT} ({exc}); free the port and retry")
        return 1
    webvec = str(Path(sys.executable).with_name("webvec"))
    env = {**os.environ, "WEBVEC_CRAWLS_DIR": str(HERE.parent / "crawls")}
    try:
        print(f"$ webvec run demo    (sample site served at {server.url})", flush=True)
        code = subprocess.call([webvec, "run", "demo"], env=env)
        if code:
            return code
        print(f'\n$ webvec query demo "{question}" -k 3', flush=True)
        return subprocess.call([webvec, "query", "demo", question, "-k", "3"], env=env)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
