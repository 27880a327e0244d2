"""The routes, one module per group; ``ROUTERS`` is what the app includes."""

from __future__ import annotations

from fastapi import APIRouter

from velocast_serving.api import admin, compat, health, predict, train

ROUTERS: tuple[APIRouter, ...] = (predict.router, compat.router, admin.router, train.router, health.router)

__all__ = ["ROUTERS"]
