"""The HTTP side: an OpenAI-compatible API server on Litestar + uvicorn, its console client and
its load driver. `inference` never imports this package; this package imports `inference`."""
