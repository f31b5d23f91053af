"""`python -m tradepulse.gateway`: run the HTTP API (GATEWAY_HOST, GATEWAY_PORT)."""

import sys

from tradepulse.gateway.app import main

sys.exit(main())
