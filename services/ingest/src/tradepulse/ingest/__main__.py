"""`python -m tradepulse.ingest`: run the service until SIGTERM or SIGINT."""

from tradepulse.ingest.app import main

raise SystemExit(main())
