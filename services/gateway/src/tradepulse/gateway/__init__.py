"""TradePulse gateway: the HTTP API. Owns nothing but API keys; talks to the services over NATS."""
