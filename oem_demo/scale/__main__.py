"""``python -m oem_demo.scale --root DIR --scale full|small|extra``: generate (or bring up to date) a source."""
import sys

from oem_demo.scale import main

sys.exit(main())
