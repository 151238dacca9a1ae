"""facetwin's HTTP service: a FastAPI app (``create_app``) and the web page it serves at ``/``."""

from facetwin.service.app import create_app

__all__ = ["create_app"]
