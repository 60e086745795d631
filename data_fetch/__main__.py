"""Command line: ``python -m data_fetch list | info NAME | fetch NAME ... | fetch-course --scale S | manifest |
check-portal | benchmark NAME ...``."""

from __future__ import annotations

import argparse
import json
import sys

from . import cluster, dataset, manifest
from .errors import DataFetchError
from .registry import get_spec


def add_scheduler_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help=f"Dask scheduler address (tcp://host:8786); default ${cluster.SCHEDULER_VARIABLE} "
        "or a LocalCluster on this machine",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_fetch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the datasets")
    p_info = sub.add_parser("info", help="describe a dataset and its arrays")
    p_info.add_argument("name")
    p_fetch = sub.add_parser("fetch", help="produce a dataset into the cache (or find it there)")
    p_fetch.add_argument("name")
    p_fetch.add_argument("--source", default="auto", choices=dataset.SOURCES)
    p_fetch.add_argument("--n-events", type=int, default=None)
    p_fetch.add_argument("--seed", type=int, default=0)
    add_scheduler_option(p_fetch)
    p_course = sub.add_parser(
        "fetch-course", help="produce every sample the course needs at one scale (data_fetch/manifest.py)"
    )
    p_course.add_argument(
        "--scale",
        required=True,
        choices=tuple(manifest.SCALES),
        help="lecture: what `bash run.sh course` runs; ci: what the tests run",
    )
    p_course.add_argument("--lesson", default=None, help="only this lesson's samples (e.g. 01)")
    p_course.add_argument("--source", default="pythia", choices=dataset.SOURCES)
    add_scheduler_option(p_course)
    sub.add_parser("manifest", help="the course's samples: dataset, role, size, seed, notebooks")
    p_check = sub.add_parser(
        "check-portal",
        help="on a networked machine: list the open-data records, read a few events of each remotely, "
        "and say what worked",
    )
    p_check.add_argument("--n-events", type=int, default=100)
    p_bench = sub.add_parser(
        "benchmark", help="offline generation vs a bare Pythia loop, on a process pool and on a Dask LocalCluster"
    )
    p_bench.add_argument("name")
    p_bench.add_argument("--n-events", type=int, default=2000)
    p_bench.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            for name in dataset.list_datasets():
                print(f"{name:12s} {get_spec(name).description}")
        elif args.command == "info":
            print(dataset.info(args.name))
        elif args.command == "fetch":
            data = dataset.load(
                args.name, n_events=args.n_events, seed=args.seed, source=args.source, scheduler=args.scheduler
            )
            print(data)
            print(json.dumps(data.metadata, indent=1))
        elif args.command == "fetch-course":
            fetched = manifest.fetch_course(args.scale, args.lesson, source=args.source, scheduler=args.scheduler)
            print(f"{len(fetched)} samples ready for the {args.scale} scale")
        elif args.command == "check-portal":
            from . import opendata

            return 0 if opendata.check_portal(n_events=args.n_events) else 1
        elif args.command == "manifest":
            for entry in manifest.SAMPLES:
                seed = "drawn" if entry.seed is None else entry.seed
                print(
                    f"{entry.dataset:16s} {entry.role:9s} {entry.n_events:>8d}  seed {seed!s:5s}  "
                    f"{', '.join(entry.used_by)}"
                )
        elif args.command == "benchmark":
            from . import pythia_source

            print(
                json.dumps(
                    pythia_source.benchmark(get_spec(args.name), args.n_events, workers=args.workers), indent=1
                )
            )
    except DataFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
