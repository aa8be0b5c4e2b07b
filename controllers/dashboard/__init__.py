"""`headwater dashboard`: a live web view of the Flux objects, acting as the person using it.

    headwater dashboard                       # http://127.0.0.1:9400, every namespace
    headwater dashboard -n apps --port 8080
    headwater dashboard --address 0.0.0.0 --user-header X-Forwarded-User   # in a cluster

An aiohttp app (app.py) of server-rendered Jinja2 pages with htmx (pinned,
shipped in static/): an overview with counts and filters, a graph of sources
→ Kustomizations/HelmReleases → their objects, and a page per object with
its conditions, history, events and drift corrections. It watches the API
(watch.py) and pushes change notices over server-sent events, so open pages
refresh their live region within a second. Its buttons (reconcile, with
source, suspend, resume) are the CLI's own writes (actions.py). Who it acts
as is in access.py. It is not a controller: no kopf, and it imports the CLI's
`controllers.commands` and the toolkit, no controller package.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from aiohttp import web

from controllers.commands import common

HTMX_VERSION = "2.0.8"
DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9400


def _serve(args: argparse.Namespace) -> int:
    from controllers.dashboard import access, app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    configuration = common.load_configuration(args)
    namespace = args.namespace or common.DEFAULT_NAMESPACE
    sessions = access.Sessions(
        configuration,
        namespace=namespace,
        all_namespaces=args.namespace is None,
        user_header=args.user_header or None,
    )
    where = f"namespace {namespace}" if args.namespace else "every namespace"
    print(f"headwater dashboard on http://{args.address}:{args.port}/ ({where})", flush=True)
    web.run_app(
        app.make_app(sessions),
        host=args.address,
        port=args.port,
        print=None,
        access_log=None,
        # Open SSE streams never finish on their own: do not wait for them on shutdown.
        shutdown_timeout=1.0,
    )
    return common.EXIT_OK


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "dashboard",
        help="serve the live web dashboard (default http://127.0.0.1:9400)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--address", default=DEFAULT_ADDRESS, help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to bind (default: %(default)s)"
    )
    parser.add_argument(
        "-n", "--namespace", help="show only this namespace (default: every namespace)"
    )
    parser.add_argument(
        "--user-header",
        default=None,
        metavar="HEADER",
        help="in a cluster behind an authenticating proxy: the trusted header naming the "
        "signed-in user, who is then impersonated for every API call (e.g. X-Forwarded-User)",
    )
    common.add_connection_flags(parser)
    parser.set_defaults(func=common.guarded("dashboard", _serve))
