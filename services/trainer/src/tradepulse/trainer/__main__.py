"""`python -m tradepulse.trainer`: run one trainer replica until SIGTERM or SIGINT."""

from tradepulse.trainer.app import main

raise SystemExit(main())
