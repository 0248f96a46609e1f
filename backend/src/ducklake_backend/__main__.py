"""``python -m ducklake_backend``: serve the API with uvicorn (JSON logs on stdout)."""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    import uvicorn

    from .app import create_app
    from .config import ConfigError

    try:
        app = create_app()
    except ConfigError as exc:
        print(json.dumps({"level": "ERROR", "msg": f"invalid configuration: {exc}"}), file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=os.environ.get("DUCKLAKE_HTTP_HOST", "0.0.0.0"),
        port=int(os.environ.get("DUCKLAKE_HTTP_PORT", "8000")),
        log_config=None,
        proxy_headers=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
