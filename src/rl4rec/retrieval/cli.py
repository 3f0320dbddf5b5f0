"""``rl4rec serve`` (= ``./runs/run_retrieval.sh``): the RetrievalService as a detached Ray actor."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

from rl4rec.config_cli import opt, parse_config
from rl4rec.retrieval.ray_service import NAMESPACE, SERVICE_NAME


def _resource(text: str) -> tuple[str, float]:
    name, sep, qty = text.partition("=")
    try:
        value = float(qty)
    except ValueError:
        value = -1.0
    if not sep or not name or value <= 0:
        raise argparse.ArgumentTypeError(f"expected NAME=QUANTITY with a positive quantity, got {text!r}")
    return name, value


@dataclass
class ServeConfig:
    """``rl4rec serve``: each field is a flag (``--name``), with its help text."""

    datasets: list[str] = opt(  # noqa: RUF009 (opt returns a dataclasses.field)
        default_factory=lambda: ["beauty"], help="datasets to load (default: beauty)"
    )
    data_dir: str = opt("data")
    embedder: str = opt("default", "sentence-transformers model name or path")
    embedder_device: str = opt("auto", "cpu | cuda | auto")
    embedder_batch_size: int | None = opt(None, "default: 16 on CPU, 128 on a GPU")
    query_prefix: str = opt("")
    document_prefix: str = opt("")
    name: str = opt(SERVICE_NAME)
    namespace: str = opt(NAMESPACE)
    address: str | None = opt(None, "existing Ray cluster (default: this machine, started if needed)")
    port: int = opt(6379, "port of a Ray head started here")
    node_ip_address: str = opt("127.0.0.1", "address a Ray head started here advertises")
    num_cpus: float = opt(1)
    num_gpus: float = opt(0)
    resources: list[tuple[str, float]] = opt(  # noqa: RUF009 (opt returns a dataclasses.field)
        default_factory=list,
        help="custom Ray resources the actor needs, e.g. retrieval_node=1: Ray places it only on a node started "
        "with them (ray start --resources='{\"retrieval_node\": 1}')",
        parse=_resource,
        nargs="+",
        metavar="NAME=QTY",
    )
    max_concurrency: int = opt(8, "concurrent calls the actor serves")
    replace: bool = opt(False, "stop a running service first (reload data)")
    stop: bool = opt(False, "stop the service (and, with --stop_cluster, Ray)")
    stop_cluster: bool = opt(False, "with --stop: also `ray stop` this machine")


def serve_main(argv: list[str]) -> int:
    args = parse_config(
        ServeConfig,
        argv,
        "rl4rec serve",
        "Start a Ray head if none is running, start the named RetrievalService actor with the given "
        "datasets, wait until it answers, and return. --stop stops it.",
    )

    from rl4rec.retrieval import ray_service

    address = args.address or "auto"
    if args.stop:
        stopped = ray_service.cluster_running(address) and ray_service.stop_service(
            args.name, args.namespace, address
        )
        print(f"{args.name}: {'stopped' if stopped else 'was not running'}")
        if args.stop_cluster:
            import subprocess

            subprocess.run([ray_service._ray_cli(), "stop"], check=False)
        return 0
    if args.address is None and not ray_service.cluster_running("auto"):
        address = ray_service.start_head(args.port, args.node_ip_address)
        print(f"started a Ray head on this machine, port {args.port} (token authentication on)")
    embedder = {
        "model_name": args.embedder,
        "device": args.embedder_device,
        "batch_size": args.embedder_batch_size,
        "query_prefix": args.query_prefix,
        "document_prefix": args.document_prefix,
    }
    handle = ray_service.start_service(
        args.datasets,
        data_dir=args.data_dir,
        embedder=embedder,
        name=args.name,
        namespace=args.namespace,
        address=address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        resources=dict(args.resources),
        max_concurrency=args.max_concurrency,
        replace=args.replace,
    )
    import ray

    info = ray.get(handle.ping.remote())
    print(f"{args.name} is up in namespace {args.namespace!r}: {json.dumps(info['datasets'])}")
    print("connect from Python:")
    print("  from rl4rec.rewards import create_reward_function")
    print(
        f"  reward_fn = create_reward_function(dataset_name={args.datasets[0]!r}, reward_type='ndcg', k=10)"
    )
    print("train against it:  python src/train_with_trl.py --retrieval ray ...")
    print("stop it:           rl4rec serve --stop   (add --stop_cluster to stop Ray too)")
    return 0
