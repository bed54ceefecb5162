"""The ``shoal`` command: ``shoal scheduler`` and ``shoal worker``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

from . import _engine
from .core import security
from .deploy.local import DEFAULT_DASHBOARD, dashboard_spec, scheduler_options
from .worker.main import main as worker_main


def _scheduler(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="shoal scheduler", description="Start a shoal scheduler.")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1: this machine only; "
        "--host 0.0.0.0 listens on every interface, with a token)",
    )
    parser.add_argument("--port", type=int, default=8786, help="port (default 8786, 0 for any)")
    parser.add_argument(
        "--dashboard-address",
        default=DEFAULT_DASHBOARD,
        help="where the dashboard listens (default :8787 on --host; "
        "a taken port moves on to the next free one)",
    )
    parser.add_argument(
        "--dashboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the dashboard (default: yes)",
    )
    parser.add_argument(
        "--worker-ttl",
        default=None,
        help="declare a worker dead after this long without a word from it, as "
        "Dask's worker-ttl (default: distributed.scheduler.worker-ttl of Dask's "
        "configuration, else '5 minutes'; 'none' for never)",
    )
    parser.add_argument(
        "--allowed-failures",
        type=int,
        default=None,
        help="a task errs with KilledWorker once more workers than this died "
        "running it (default: distributed.scheduler.allowed-failures, else 3)",
    )
    parser.add_argument(
        "--scheduler-file",
        default=None,
        help="write the scheduler's address to this JSON file once it listens (for "
        "`shoal worker --scheduler-file` and Client(scheduler_file=...)); removed at exit",
    )
    security.add_token_options(
        parser,
        "the token clients and workers must present; required beyond loopback, "
        "generated if not given",
    )
    security.add_tls_options(parser)
    security.add_stdin_option(parser)
    parser.add_argument("--lifeline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        given: dict[str, Any] = {}
        if args.worker_ttl is not None:
            given["worker_ttl"] = args.worker_ttl
        if args.allowed_failures is not None:
            given["allowed_failures"] = args.allowed_failures
        options = scheduler_options(given)
        security.apply_stdin_credentials(args)
        token = security.given_token(args.token, args.token_file)
        tls = security.given_tls(args, "scheduler", token).tls_for("scheduler")
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    security.pop_tls_environment()
    if args.lifeline:
        # Started over SSH: end when the connection that started it does.
        _engine.exit_on_stdin_eof()
    generated = token is None and not security.is_loopback(args.host)
    if generated:
        token = security.new_token()

    def ready(address: str, dashboard: str | None) -> None:
        if args.scheduler_file is not None:
            import json

            written = args.scheduler_file + ".writing"
            with open(written, "w") as f:
                json.dump({"address": address}, f)
            os.replace(written, args.scheduler_file)  # whole, or not there
        print(f"Scheduler at: {address}", flush=True)
        if dashboard is not None:
            print(f"Dashboard at: {dashboard}/status", flush=True)
        if tls is None and not security.is_loopback(args.host):
            print(security.PLAIN_TCP_WARNING, file=sys.stderr, flush=True)
        if generated:
            print(f"Token: {token}", flush=True)
            print(
                "Clients and workers need it: set SHOAL_TOKEN (or pass --token-file to "
                "'shoal worker', security=shoal.Security(token=...) to Client)",
                file=sys.stderr,
                flush=True,
            )

    try:
        # Returns after a client's shutdown, or after SIGINT/SIGTERM, once
        # workers and clients have been told.
        dashboard = dashboard_spec(args.dashboard_address) if args.dashboard else None
        config = _engine.SchedulerConfig(
            args.host, args.port, dashboard, token=token, tls=tls, **options
        )
        _engine.run_scheduler(config, ready)
    except (OSError, ValueError) as e:
        print(f"shoal scheduler: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        # Python saw the Ctrl-C too; the engine already shut down cleanly.
        pass
    finally:
        if args.scheduler_file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(args.scheduler_file)


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``shoal scheduler ...`` and ``shoal worker ...``."""
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: shoal {scheduler,worker} [options]  (shoal COMMAND --help for more)"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        sys.exit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command == "scheduler":
        _scheduler(rest)
    elif command == "worker":
        worker_main(rest)
    else:
        print(f"shoal: unknown command {command!r}\n{usage}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
