"""A registered velocast model, loaded by its ``models:/`` URI without importing MLflow.

The serving sidecar loads its champions this way: importing MLflow alone costs a sidecar worker
about a second (70–80 % of a load through ``velocast.ml.pyfunc.load_velocast_model``), so this
module speaks to the tracking server's REST API (MLflow 3.x) with ``requests`` and reads two files:

1. the version: ``GET …/registered-models/alias`` (``models:/<name>@<alias>``), then
   ``GET …/model-versions/get-download-uri``, which answers the version's ``storage_location``
   (else its ``source``; the ``ModelVersion`` message itself carries no storage location) and
   404s for an unknown name or version;
2. ``MLmodel`` (YAML), which names the velocast model file (the pyfunc artifact
   ``velocast_model``), then that joblib file, read from where the version's files are:
   ``mlflow-artifacts:`` (a server that proxies its store, as the local stack's and production's
   do) through the tracking server's artifact API, like MLflow's client; ``gs://`` with the
   project's storage client (the emulator when the settings say so); ``file://`` or a path.

Each call has bounded timeouts and no retry: an unreachable server fails in seconds with
``TrackingServerUnavailableError``; an unknown name, alias or version is
``RegisteredModelNotFoundError``; a pyfunc that is not velocast's is ``NotAVelocastPyfuncError``;
a file the version lacks is ``MissingModelArtifactError``. What this module does not reproduce goes
through ``velocast.ml.pyfunc.load_velocast_model`` (MLflow, imported then): a tracking URI that is
not http(s) (databricks, sqlite, a folder), MLflow client settings beyond a token or a user and
password (``MLFLOW_TRACKING_AUTH``, AWS SigV4, TLS certificates, workspaces), and artifact stores
other than the three above.
"""

from __future__ import annotations

import base64
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import quote, unquote, urlsplit

import requests
import yaml

from velocast.errors import NotFoundError, RequestError, UnavailableError, VelocastError
from velocast.ml.model_base import ModelError, VelocastModel, load_model
from velocast.settings import VelocastSettings, get_settings

if TYPE_CHECKING:
    from google.cloud import storage as gcs

MODEL_FILE_KEY: Final = "velocast_model"  # key of the joblib file in the pyfunc's artifacts
MLMODEL_FILE: Final = "MLmodel"
PYFUNC_FLAVOR: Final = "python_function"
# (connect, read) seconds per request: a server that does not answer fails the load in seconds.
TIMEOUT_SECONDS: Final = (3.0, 6.0)
_API: Final = "/api/2.0/mlflow"
_ARTIFACTS_API: Final = "/api/2.0/mlflow-artifacts/artifacts"
_MODELS_URI: Final = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z0-9_-]+))/?$"
)
# MLflow client settings this module does not reproduce: with one set, MLflow loads the model.
_DELEGATED_ENV: Final = (
    "MLFLOW_TRACKING_AUTH",
    "MLFLOW_TRACKING_AWS_SIGV4",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_WORKSPACE",
)  # and a ~/.mlflow/credentials file


class ModelUriError(RequestError, ValueError):
    """Not a ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` URI."""


class RegisteredModelNotFoundError(NotFoundError, LookupError):
    """The tracking server has no such registered model, alias or version."""


class TrackingServerUnavailableError(UnavailableError):
    """The tracking server (or the artifact store) did not answer, or answered a server error."""


class TrackingServerError(VelocastError):
    """The tracking server refused the request (credentials, a wrong URI): a misconfiguration."""


class NotAVelocastPyfuncError(ModelError):
    """The version is an MLflow model but not a velocast pyfunc."""


class MissingModelArtifactError(ModelError, NotFoundError):
    """The version lacks a file it needs (``MLmodel``, the velocast model file)."""


@dataclass(frozen=True)
class ModelUri:
    """A parsed ``models:/<name>/<version>`` or ``models:/<name>@<alias>``."""

    name: str
    version: int | None
    alias: str | None


def parse_model_uri(uri: str) -> ModelUri:
    match = _MODELS_URI.match(uri.strip())
    if match is None:
        hint = " (runs:/ URIs are not loaded: use the registered model)" if uri.startswith("runs:/") else ""
        raise ModelUriError(f"expected models:/<name>/<version> or models:/<name>@<alias>, got {uri!r}{hint}")
    version = match.group("version")
    return ModelUri(
        name=match.group("name"),
        version=None if version is None else int(version),
        alias=match.group("alias"),
    )


def load_registered_model(
    model_uri: str, *, settings: VelocastSettings | None = None, storage: gcs.Client | None = None
) -> VelocastModel:
    """The ``VelocastModel`` of the registered velocast pyfunc at ``model_uri`` (see the module).

    The tracking server is ``settings.mlflow_tracking_uri`` (the process settings by default);
    ``storage`` reads ``gs://`` artifacts (default: ``velocast.gcp.clients.storage_client``).
    """
    uri = parse_model_uri(model_uri)  # refuses runs:/ and other forms before any network call
    settings = settings or get_settings()
    tracking_uri = (settings.mlflow_tracking_uri or "").rstrip("/")
    if urlsplit(tracking_uri).scheme not in {"http", "https"} or _delegated_setting() is not None:
        return _load_with_mlflow(model_uri, settings)
    with requests.Session() as session:
        session.headers.update(_auth_headers())
        version, artifact_uri = _resolve(uri, model_uri, tracking_uri, session)
        artifacts = _artifact_store(artifact_uri, tracking_uri, session, settings, storage)
        if artifacts is None:  # s3://, dbfs:/, runs:/...: MLflow's artifact repositories read them
            return _load_with_mlflow(model_uri, settings)
        where = f"{model_uri} (version {version}, {artifact_uri})"
        with tempfile.TemporaryDirectory(prefix="velocast-model-") as folder:
            mlmodel = Path(folder) / MLMODEL_FILE
            artifacts.fetch(MLMODEL_FILE, mlmodel, f"{where} is not an MLflow model: no")
            relative = _model_file(mlmodel.read_text(encoding="utf-8"), where)
            path = Path(folder) / "model" / posixpath.basename(relative)
            path.parent.mkdir()
            artifacts.fetch(relative, path, f"{where} lacks its {MODEL_FILE_KEY!r} artifact:")
            try:
                return load_model(path)
            except ModelError as error:  # a file under the right key that is not velocast's
                raise NotAVelocastPyfuncError(f"{where}: {error}") from error


def _resolve(uri: ModelUri, model_uri: str, tracking_uri: str, session: requests.Session) -> tuple[str, str]:
    """The version ``uri`` names and its download URI, asked of the tracking server's REST API."""
    version = str(uri.version)
    if uri.alias is not None:
        params = {"name": uri.name, "alias": uri.alias}
        answer = _get_json(session, tracking_uri, f"{_API}/registered-models/alias", params, model_uri)
        version = str((answer.get("model_version") or {}).get("version") or "")
        if not version:
            raise TrackingServerError(f"{tracking_uri} answered no version for {model_uri}: {answer}")
    params = {"name": uri.name, "version": version}
    answer = _get_json(session, tracking_uri, f"{_API}/model-versions/get-download-uri", params, model_uri)
    artifact_uri = answer.get("artifact_uri")
    if not isinstance(artifact_uri, str) or not artifact_uri:
        raise TrackingServerError(f"{tracking_uri} answered no artifact URI for {model_uri}: {answer}")
    return version, artifact_uri


# --- the tracking server ---------------------------------------------------------------------------


def _get_json(
    session: requests.Session, tracking_uri: str, endpoint: str, params: dict[str, str], model_uri: str
) -> dict[str, Any]:
    response = _get(session, f"{tracking_uri}{endpoint}", tracking_uri, params=params)
    body = _json_or_none(response)
    if response.ok and body is not None:
        return body
    code, message = (body or {}).get("error_code"), (body or {}).get("message") or response.text[:200]
    # An unknown name or version is RESOURCE_DOES_NOT_EXIST (404); an unknown alias of a known
    # model is INVALID_PARAMETER_VALUE (400) "Registered model alias … not found."
    if code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in message):
        raise RegisteredModelNotFoundError(f"{model_uri}: {message}")
    failure = f"the MLflow tracking server {tracking_uri} answered {response.status_code} to {endpoint}"
    if response.status_code >= 500 or response.status_code == 429:
        raise TrackingServerUnavailableError(f"{failure}: {code or ''} {message}".rstrip())
    raise TrackingServerError(f"{failure} for {model_uri}: {code or 'not an MLflow answer'}: {message}")


def _get(
    session: requests.Session,
    url: str,
    server: str,
    *,
    params: dict[str, str] | None = None,
    stream: bool = False,
) -> requests.Response:
    try:
        return session.get(url, params=params, timeout=TIMEOUT_SECONDS, stream=stream)
    except requests.Timeout:
        connect, read = TIMEOUT_SECONDS
        raise TrackingServerUnavailableError(
            f"the MLflow tracking server {server} did not answer {urlsplit(url).path} "
            f"(timeouts: {connect:g} s to connect, {read:g} s to read)"
        ) from None
    except requests.RequestException as error:
        raise TrackingServerUnavailableError(
            f"cannot reach the MLflow tracking server {server}: {type(error).__name__}: {error}"
        ) from error


def _json_or_none(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _delegated_setting() -> str | None:
    """The MLflow client setting this module does not reproduce, if one is set."""
    for name in _DELEGATED_ENV:
        if os.environ.get(name, "").strip().lower() not in {"", "false", "0"}:
            return name
    credentials = Path("~/.mlflow/credentials").expanduser()  # MLflow reads a user/password there
    return str(credentials) if credentials.exists() else None


def _auth_headers() -> dict[str, str]:
    """What MLflow's client sends: basic auth with a user and a password, else a bearer token."""
    username = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if username and password:
        pair = base64.standard_b64encode(f"{username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _load_with_mlflow(model_uri: str, settings: VelocastSettings) -> VelocastModel:
    from velocast.ml import pyfunc  # MLflow: only for what this module does not read itself

    return pyfunc.load_velocast_model(model_uri, settings=settings)


# --- the MLmodel file and the artifact stores ----------------------------------------------------


def _model_file(mlmodel: str, where: str) -> str:
    """The path, in the model's folder, of the file ``VelocastModel.save`` wrote (from ``MLmodel``)."""
    try:
        document = yaml.safe_load(mlmodel)
    except yaml.YAMLError as error:
        raise NotAVelocastPyfuncError(
            f"{where} is not an MLflow model: its MLmodel is not YAML ({error})"
        ) from None
    flavors = document.get("flavors") if isinstance(document, dict) else None
    flavor = (flavors or {}).get(PYFUNC_FLAVOR) if isinstance(flavors, dict) else None
    artifacts = flavor.get("artifacts") if isinstance(flavor, dict) else None
    entry = artifacts.get(MODEL_FILE_KEY) if isinstance(artifacts, dict) else None
    relative = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(relative, str) or not relative:
        raise NotAVelocastPyfuncError(
            f"{where} is not a velocast pyfunc (no {MODEL_FILE_KEY!r} artifact in its MLmodel)"
        )
    normalized = posixpath.normpath(relative)
    if normalized.startswith(("/", "..")):  # the model's own folder only
        raise NotAVelocastPyfuncError(
            f"{where} names its {MODEL_FILE_KEY!r} artifact outside its folder: {relative}"
        )
    return normalized


class _ArtifactStore(Protocol):
    def fetch(self, relative: str, destination: Path, missing: str) -> None:
        """Write the model folder's file ``relative`` to ``destination``; ``missing`` + path if absent."""


def _artifact_store(
    artifact_uri: str,
    tracking_uri: str,
    session: requests.Session,
    settings: VelocastSettings,
    storage: gcs.Client | None,
) -> _ArtifactStore | None:
    parts = urlsplit(artifact_uri)
    if parts.scheme == "mlflow-artifacts":
        return _ProxiedArtifacts(session, tracking_uri, parts.netloc, parts.path)
    if parts.scheme == "gs":
        if storage is None:
            from velocast.gcp.clients import storage_client  # the Google clients: only for gs://

            storage = storage_client(settings)
        return _GcsArtifacts(storage, parts.netloc, parts.path.strip("/"))
    if parts.scheme == "file":
        return _LocalArtifacts(Path(unquote(parts.path)))
    if parts.scheme == "":
        return _LocalArtifacts(Path(artifact_uri))
    return None


class _ProxiedArtifacts:
    """Files of a server that proxies its store, read through its artifact API (as MLflow does)."""

    def __init__(self, session: requests.Session, tracking_uri: str, netloc: str, path: str) -> None:
        tracking = urlsplit(tracking_uri)
        # mlflow-artifacts://host:port/… names its server; mlflow-artifacts:/… is the tracking server.
        self._server = f"{tracking.scheme}://{netloc or tracking.netloc}{tracking.path.rstrip('/')}"
        self._root = path.strip("/")
        self._session = session

    def fetch(self, relative: str, destination: Path, missing: str) -> None:
        path = posixpath.join(self._root, relative)
        url = f"{self._server}{_ARTIFACTS_API}/{quote(path)}"
        with _get(self._session, url, self._server, stream=True) as response:
            if response.ok:
                try:
                    with destination.open("wb") as file:
                        for chunk in response.iter_content(chunk_size=1 << 20):
                            file.write(chunk)
                except requests.RequestException as error:  # a read timeout mid-file
                    raise TrackingServerUnavailableError(
                        f"the MLflow tracking server {self._server} stopped sending {path}: {error}"
                    ) from error
                return
            # The proxy answers 500 for a missing file too: the listing tells the two apart.
            if not self._listed(path):
                raise MissingModelArtifactError(f"{missing} {relative}")
            raise TrackingServerUnavailableError(
                f"the MLflow tracking server {self._server} answered {response.status_code} "
                f"reading the artifact {path}: {response.text[:200]}"
            )

    def _listed(self, path: str) -> bool:
        parent, name = posixpath.split(path)
        response = _get(
            self._session, f"{self._server}{_ARTIFACTS_API}", self._server, params={"path": parent}
        )
        files = (_json_or_none(response) or {}).get("files") or []
        return any(isinstance(f, dict) and f.get("path") == name and not f.get("is_dir") for f in files)


class _GcsArtifacts:
    """Files of a store in a bucket, read with the project's storage client."""

    def __init__(self, client: gcs.Client, bucket: str, prefix: str) -> None:
        self._bucket = client.bucket(bucket)
        self._prefix = prefix

    def fetch(self, relative: str, destination: Path, missing: str) -> None:
        from google.api_core import exceptions
        from google.cloud.storage.retry import DEFAULT_RETRY

        name = posixpath.join(self._prefix, relative)
        try:
            # A short retry budget: an unreachable store fails in seconds, not after 120 s.
            self._bucket.blob(name).download_to_filename(
                str(destination), timeout=TIMEOUT_SECONDS, retry=DEFAULT_RETRY.with_timeout(10.0)
            )
        except exceptions.NotFound:
            raise MissingModelArtifactError(f"{missing} {relative}") from None
        except (exceptions.GoogleAPIError, requests.RequestException) as error:
            raise TrackingServerUnavailableError(
                f"cannot read gs://{self._bucket.name}/{name}: {type(error).__name__}: {error}"
            ) from error


class _LocalArtifacts:
    """Files of a store on this machine (a ``file://`` URI or a path)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def fetch(self, relative: str, destination: Path, missing: str) -> None:
        source = self._root / relative
        if not source.is_file():
            raise MissingModelArtifactError(f"{missing} {relative}")
        shutil.copyfile(source, destination)


__all__ = [
    "MODEL_FILE_KEY",
    "TIMEOUT_SECONDS",
    "MissingModelArtifactError",
    "ModelUri",
    "ModelUriError",
    "NotAVelocastPyfuncError",
    "RegisteredModelNotFoundError",
    "TrackingServerError",
    "TrackingServerUnavailableError",
    "load_registered_model",
    "parse_model_uri",
]
