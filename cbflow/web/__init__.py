"""The portal: FastAPI routes rendering GOV.UK Frontend pages. It calls services, never the
reverse."""

from cbflow.web.app import create_app

__all__ = ["create_app"]
