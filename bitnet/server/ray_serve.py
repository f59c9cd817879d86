"""Serving beyond one machine: the OpenAI-compatible server as a Ray Serve deployment (`pip install ".[ray]"`).

    bitnet serve --ray --replicas K [--max-replicas M] [--ray-address ADDR] [the usual serve options]

Each replica is an actor holding its own model and running the same FastAPI app as `bitnet serve` (continuous
batching, queue, 503s, streaming, /metrics); Ray Serve's HTTP proxy spreads requests over the replicas, health-
checks them and replaces a replica that dies. Every response names the replica that answered: the
`X-Bitnet-Replica` header and the suffix of `system_fingerprint`.

Autoscaling: with `--max-replicas M` (> K) the deployment gets Ray Serve's autoscaling config
`{"min_replicas": K, "max_replicas": M, "target_ongoing_requests": P}` (P = --parallel, the batch width of one
replica): Serve adds a replica when the replicas average more than P requests in flight, and removes one when
they stay below it (`upscale_delay_s` / `downscale_delay_s` at Ray's defaults, 30 s / 600 s). Each replica
reserves `--threads` CPUs (`ray_actor_options.num_cpus`), which is what Ray packs onto nodes.

Cluster: without `--ray-address` a local Ray instance is started (and stopped on exit); `--ray-address auto` or
`HOST:PORT` joins a running cluster (`ray start --head` on one machine, `ray start --address HOST:PORT` on the
others). A model file must be readable at the same path on every node (or use the embedded model, which
ships in the package).

The module imports Ray at load time: it is imported only when `--ray` is given.
"""
from __future__ import annotations

import argparse
import logging
import signal
import socket
import threading
from pathlib import Path

import ray
from ray import serve

from bitnet.argtypes import device_from_args
from bitnet.backends import resolve_device
from bitnet.server.app import ServerSettings, create_app

log = logging.getLogger("bitnet.server")

DEPLOYMENT_NAME = "bitnet"
APP_NAME = "bitnet"


@serve.ingress()
class BitNetReplica:
    """One replica: a loaded model and the server app around it (built after __init__ by Ray Serve)."""

    def __init__(self, model_path: str | None, n_threads: int, n_ctx: int | None, settings: dict,
                 lm_head: str = "exact", device: str | None = None):
        import bitnet

        self.model = bitnet.load(model_path, n_threads=n_threads, n_ctx=n_ctx, lm_head=lm_head, device=device)
        replica = serve.get_replica_context().replica_id.unique_id
        self.settings = ServerSettings(replica=replica, **settings)
        log.info("replica %s serving %s (%d slots)", replica, self.settings.model_id, self.settings.parallel)

    def __serve_build_asgi_app__(self):
        self.bitnet_app = create_app(self.model, self.settings)   # `app` is Ray Serve's own attribute
        return self.bitnet_app

    def check_health(self) -> None:
        """Called by Ray Serve every few seconds: a replica whose batch thread has died is replaced."""
        pool = self.bitnet_app.state.server.pool
        if not pool._worker.alive:
            raise RuntimeError("the batch thread of this replica has stopped")


def build_application(model_path: str | None, *, replicas: int, max_replicas: int | None, n_threads: int,
                      n_ctx: int | None, settings: dict, queue_size: int, lm_head: str = "exact",
                      device: str | None = None):
    """The Ray Serve application: `replicas` copies (autoscaling up to `max_replicas` when given); with
    device="cuda" each replica asks Ray for a GPU of its own."""
    options: dict = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": {"num_cpus": n_threads, **({"num_gpus": 1} if device == "cuda" else {})},
        # Requests beyond the batch and the replica's own queue wait in Ray's router instead of getting the
        # replica's 503, so another (or a new) replica can take them.
        "max_ongoing_requests": settings["parallel"] + queue_size,
        "health_check_period_s": 2,
        "health_check_timeout_s": 30,
    }
    if max_replicas is not None and max_replicas > replicas:
        options["autoscaling_config"] = {"min_replicas": replicas, "max_replicas": max_replicas,
                                         "target_ongoing_requests": settings["parallel"]}
    else:
        options["num_replicas"] = replicas
    deployment = serve.deployment(BitNetReplica).options(**options)
    return deployment.bind(model_path, n_threads, n_ctx, settings, lm_head, device)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace, api_key: str | None) -> int:
    """`bitnet serve --ray`: deploy, log the address, serve until SIGINT/SIGTERM, then tear down."""
    import bitnet

    # Fail here, in the caller's terminal, on a file that cannot load, not in every replica's log.
    with bitnet.load(args.model, n_threads=1, n_ctx=args.ctx_size) as probe:
        model_id = args.alias or Path(probe.path).stem
    threads = args.threads or 1
    port = args.port or _free_port(args.host)
    started_ray = not ray.is_initialized() and args.ray_address is None
    ray.init(address=args.ray_address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": args.host, "port": port})
        settings = {"model_id": model_id, "api_key": api_key, "parallel": args.parallel,
                    "queue_size": args.queue_size, "max_body_bytes": args.max_body_size,
                    "shutdown_timeout": args.shutdown_timeout, "body_timeout": args.body_timeout,
                    "send_timeout": args.send_timeout, "prefill_chunk": args.prefill_chunk}
        model_path = str(Path(args.model).resolve()) if args.model else None
        app = build_application(model_path, replicas=args.replicas, max_replicas=args.max_replicas,
                                n_threads=threads, n_ctx=args.ctx_size, settings=settings,
                                queue_size=args.queue_size, lm_head=args.lm_head,
                                device=resolve_device(device_from_args(args)))
        serve.run(app, name=APP_NAME, route_prefix="/")
        scaling = (f"{args.replicas}..{args.max_replicas} replicas (autoscaling)"
                   if args.max_replicas and args.max_replicas > args.replicas else f"{args.replicas} replica(s)")
        log.info("serving %s on http://%s:%d (Ray Serve, %s, batch of %d slot(s) each, %d thread(s) each)",
                 model_id, args.host, port, scaling, args.parallel, threads)
        _wait_for_signal()
        log.info("shutting down the Ray Serve application")
        serve.shutdown()
    finally:
        if started_ray:
            ray.shutdown()
    log.info("stopped")
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
