"""``rl4rec serve`` (= ``./runs/run_retrieval.sh``): the RetrievalService as a detached Ray actor."""

from __future__ import annotations

import argparse
import json

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


def serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="rl4rec serve",
        description="Start a Ray head if none is running, start the named RetrievalService actor with the given "
        "datasets, wait until it answers, and return. --stop stops it.",
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["beauty"], help="datasets to load (default: beauty)"
    )
    parser.add_argument("--data_dir", "--data-dir", default="data")
    parser.add_argument("--embedder", default="default", help="sentence-transformers model name or path")
    parser.add_argument("--embedder_device", default="auto", help="cpu | cuda | auto")
    parser.add_argument(
        "--embedder_batch_size", type=int, default=None, help="default: 16 on CPU, 128 on a GPU"
    )
    parser.add_argument("--query_prefix", default="")
    parser.add_argument("--document_prefix", default="")
    parser.add_argument("--name", default=SERVICE_NAME)
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument(
        "--address", default=None, help="existing Ray cluster (default: this machine, started if needed)"
    )
    parser.add_argument("--port", type=int, default=6379, help="port of a Ray head started here")
    parser.add_argument(
        "--node_ip_address", default="127.0.0.1", help="address a Ray head started here advertises"
    )
    parser.add_argument("--num_cpus", type=float, default=1)
    parser.add_argument("--num_gpus", type=float, default=0)
    parser.add_argument(
        "--resources",
        nargs="+",
        type=_resource,
        default=[],
        metavar="NAME=QTY",
        help="custom Ray resources the actor needs, e.g. retrieval_node=1: Ray places it only on a node started "
        "with them (ray start --resources='{\"retrieval_node\": 1}')",
    )
    parser.add_argument("--max_concurrency", type=int, default=8, help="concurrent calls the actor serves")
    parser.add_argument("--replace", action="store_true", help="stop a running service first (reload data)")
    parser.add_argument(
        "--stop", action="store_true", help="stop the service (and, with --stop_cluster, Ray)"
    )
    parser.add_argument(
        "--stop_cluster", action="store_true", help="with --stop: also `ray stop` this machine"
    )
    args = parser.parse_args(argv)

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
