"""``crossbook eod``: end of day on a running server (POST /eod): venues expire DAY orders (each
owner gets an unsolicited ExecutionReport Expired) and the daily credit usage restarts."""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="server config (for the HTTP address)")
    parser.add_argument("--url", help="HTTP API base URL (default from the config)")


def run(args: argparse.Namespace) -> int:
    from crossbook.app.config import load_config
    cfg = load_config(args.config)
    base = args.url or f"http://{cfg.http.host}:{cfg.http.port}"
    req = urllib.request.Request(f"{base}/eod", data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        print(f"crossbook eod: no server at {base}: {exc}", file=sys.stderr)
        return 1
    print(f"end of day done on {answer['venues']} venue(s)")
    return 0
