"""``python -m drsl.data.synth``: the synthetic-data command line (alias of ``drsl synth``)."""

import sys

from drsl.data.synth.command import main

if __name__ == "__main__":
    sys.exit(main())
