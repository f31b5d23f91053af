"""`python -m tradepulse.registry`: run the registry service."""

import sys

from tradepulse.registry.app import main

sys.exit(main())
