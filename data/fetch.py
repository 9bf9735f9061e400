"""Get data sets onto this machine: `python -m data.fetch fashion_mnist [cifar10 faces ...]`.

Each data set goes through its real loader (data.sources), which takes the files from
paths.data_dir, from a local source (Debian's /usr/share/datasets/fashion-mnist), or from
torchvision's download, and reports the split sizes. Offline with no files, the loader's
message says what to fetch and where to put it. (`make data` first installs Debian's
dataset-fashion-mnist package when apt is available.)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from omegaconf import OmegaConf

from data.errors import DataUnavailableError
from data.schema import DatasetConfig
from data.sources import SOURCES, load_splits

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "dataset"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch data sets into the data folder.")
    parser.add_argument("names", nargs="+", choices=sorted(SOURCES), metavar="NAME")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("SOBENCH_DATA_DIR", "datasets")),
        help="where data sets live (default: $SOBENCH_DATA_DIR or ./datasets)",
    )
    args = parser.parse_args(argv)
    failed = False
    for name in args.names:
        schema = OmegaConf.structured(DatasetConfig)
        cfg = OmegaConf.merge(schema, OmegaConf.load(CONF_DIR / f"{name}.yaml"))
        try:
            splits = load_splits(cfg, args.data_dir)
        except DataUnavailableError as error:
            print(f"{name}: {error}", file=sys.stderr)
            failed = True
            continue
        print(f"{name}: {len(splits.train)} training and {len(splits.test)} test examples")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
