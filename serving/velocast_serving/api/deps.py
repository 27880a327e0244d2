"""What the route modules share: the context, the roles, helpers and the OpenAPI error tables.

Route modules import from here, ``velocast_serving.schemas`` and the services (model store, jobs,
``velocast``), never from each other. Errors are answered by the app's handlers
(``velocast_serving.errors``): routes raise, they do not map.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request, Response, status
from pydantic import BaseModel

from velocast.errors import RequestError, UnavailableError
from velocast_serving.auth import Role, require
from velocast_serving.context import ServingContext
from velocast_serving.errors import DEPENDENCY_ERRORS, DependencyUnavailableError
from velocast_serving.model_store import LoadedModel
from velocast_serving.schemas import ChampionInfo, TrainJobStatus


async def get_context(request: Request) -> ServingContext:
    # async: FastAPI runs a plain function dependency in the thread pool (~0.2 ms a request).
    context: ServingContext = request.app.state.context
    return context


Context = Annotated[ServingContext, Depends(get_context)]
PredictRole = Annotated[Role, Depends(require(Role.PREDICT))]
AdminRole = Annotated[Role, Depends(require(Role.ADMIN))]


# What ``calling`` reports as its dependency being unavailable; ValueError: a stored value that
# does not validate (pydantic's ValidationError is one).
_DEPENDENCY_FAILURES: Final[tuple[type[Exception], ...]] = (UnavailableError, *DEPENDENCY_ERRORS, ValueError)


@contextmanager
def calling(dependency: str) -> Iterator[None]:
    """Calls to ``dependency``: a failure that is not the request's is 503 ``<dependency> unavailable: …``.

    Request errors (404, 409, 422) go on to the app's handlers as they are. Our unavailable errors,
    a dependency's own errors and ``ValueError`` (an entry of the registry's summary.json that does
    not validate, say) are raised again as ``DependencyUnavailableError`` naming ``dependency``.
    """
    try:
        yield
    except RequestError:
        raise
    except _DEPENDENCY_FAILURES as error:
        raise DependencyUnavailableError(dependency, error) from error


def champion_info(loaded: LoadedModel, env: str) -> ChampionInfo:
    entry = loaded.entry
    return ChampionInfo(
        run_id=entry.run_id,
        model_type=entry.model_type,
        model_uri=entry.model_uri,
        metrics=entry.metrics.model_dump(mode="json"),
        is_champion=entry.is_champion,
        loaded_at=loaded.loaded_at,
        env=env,
    )


def json_response(body: BaseModel) -> Response:
    """``body`` serialised where this runs (a worker thread, for the predict routes).

    An ``async`` route that returns a model has FastAPI validate and serialise it on the event loop:
    10 000 predictions would hold the loop for tens of milliseconds. A ``Response`` goes out as is.
    """
    return Response(body.model_dump_json(), media_type="application/json")


def job_status_or_404(job_id: str, found: dict[str, Any] | None) -> TrainJobStatus:
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no training job {job_id!r}")
    return TrainJobStatus.of(found)


# --- OpenAPI ``responses``: the error answers a route documents --------------------------------

Responses = dict[int | str, dict[str, Any]]

UNAUTHORIZED: Final[Responses] = {401: {"description": "missing or invalid API key"}}
ADMIN_ONLY: Final[Responses] = UNAUTHORIZED | {403: {"description": "not an admin key"}}
REGISTRY_UNAVAILABLE: Final[Responses] = {
    503: {"description": "the registry cannot be reached, read or written (`registry unavailable: …`)"}
}
PREDICT_RESPONSES: Final[Responses] = UNAUTHORIZED | {
    403: {"description": "the key's role may not predict"},
    404: {"description": "no model of the requested type is loaded"},
    413: {"description": "body larger than serving_max_body_bytes"},
    422: {
        "description": "malformed body, unknown metric, too many records or JSON values, "
        "or records that cannot be read"
    },
    503: {"description": "no champion is loaded yet"},
}
# The predict routes read their body themselves (``velocast_serving.body``): documented by reference,
# the schema being added to the components by ``velocast_serving.openapi.document_bodies``.
PREDICT_REQUEST_BODY: Final[dict[str, Any]] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
    }
}
