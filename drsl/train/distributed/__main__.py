"""``torchrun --nproc_per_node=2 -m drsl.train.distributed --out run.json``: the toy check."""

import sys

from drsl.train.distributed.launch import main

if __name__ == "__main__":
    sys.exit(main())
