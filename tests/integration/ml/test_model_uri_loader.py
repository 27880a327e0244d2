"""``velocast.ml.model_uri_loader``: the sidecar's ``models:/`` loads, without importing MLflow.

Against the local MLflow server (PostgreSQL, artifacts proxied to the GCS emulator): the same
predictions as ``mlflow.pyfunc.load_model`` by alias and by version, a store in a bucket read with
the storage client, an error of its own for each failure, and no ``mlflow`` module in a fresh
process after a load. Against a stand-in server (a few canned REST answers): a local store, the
credentials MLflow's client would send, a server that does not answer, and what goes to MLflow.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import joblib
import mlflow.artifacts
import numpy as np
import pandas as pd
import pytest
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from velocast_serving.model_store import ModelLoadError, load_model_uri

from tests.integration.ml.registered_pyfuncs import (
    PlainPyfunc,
    mlflow_model,
    register_pyfunc,
)
from velocast.errors import NotFoundError, UnavailableError
from velocast.gcp.clients import storage_client
from velocast.ml import model_uri_loader, pyfunc
from velocast.ml.model_base import VelocastModel
from velocast.ml.model_uri_loader import (
    MODEL_FILE_KEY,
    TIMEOUT_SECONDS,
    MissingModelArtifactError,
    ModelUriError,
    NotAVelocastPyfuncError,
    RegisteredModelNotFoundError,
    TrackingServerError,
    TrackingServerUnavailableError,
    load_registered_model,
)
from velocast.ml.pyfunc import VelocastPyfunc, input_example
from velocast.ml.tracking import LoggedModel
from velocast.settings import VelocastSettings

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["hourly_count"]).sample(300, random_state=1)


# --- on the local MLflow server ---------------------------------------------------------------------


@pytest.mark.stack
def test_by_alias_and_by_version_it_predicts_what_mlflow_predicts(
    champion: str, logged: LoggedModel, own_settings: VelocastSettings, rows: pd.DataFrame
) -> None:
    for uri in (champion, logged.model_uri):
        expected = mlflow_model(own_settings, uri).predict(rows)
        loaded = load_registered_model(uri, settings=own_settings)
        assert loaded.model_type == "hgb"
        np.testing.assert_array_equal(loaded.predict(rows), expected)
        # The sidecar's loader goes this way.
        served = load_model_uri(uri, storage_client(own_settings))
        np.testing.assert_array_equal(served.predict(rows), expected)
    # And the pyfunc served by MLflow itself (ISO 8601 strings) agrees.
    served_by_mlflow = mlflow.pyfunc.load_model(champion).predict(input_example(rows, rows=50))
    np.testing.assert_allclose(served_by_mlflow, loaded.predict(rows)[:50])


@pytest.mark.stack
def test_a_store_in_a_bucket_is_read_with_the_storage_client(
    logged: LoggedModel,
    own_settings: VelocastSettings,
    model: VelocastModel,
    rows: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """A server that does not proxy its store answers gs:// download URIs: read from the bucket."""
    client = MlflowClient(own_settings.mlflow_tracking_uri)
    folder = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(logged.registered_name, str(logged.version)),
            dst_path=str(tmp_path),
            tracking_uri=own_settings.mlflow_tracking_uri,
        )
    )
    storage = storage_client(own_settings)
    prefix = f"tests/model-uri-loader/{uuid.uuid4().hex[:8]}"
    for path in (folder / "MLmodel", folder / "artifacts" / "hgb.joblib"):
        name = f"{prefix}/model/{path.relative_to(folder).as_posix()}"
        storage.bucket(own_settings.bucket).blob(name).upload_from_filename(str(path))
    name = f"{own_settings.registered_model_name}-in-bucket"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"gs://{own_settings.bucket}/{prefix}/model")
    uri = f"models:/{name}/{version.version}"
    assert client.get_model_version_download_uri(name, version.version).startswith("gs://")

    np.testing.assert_array_equal(
        load_registered_model(uri, storage=storage).predict(rows), model.predict(rows)
    )
    np.testing.assert_array_equal(load_model_uri(uri, storage).predict(rows), model.predict(rows))

    empty = client.create_model_version(name, f"gs://{own_settings.bucket}/{prefix}/empty")
    with pytest.raises(MissingModelArtifactError, match=r"is not an MLflow model: no MLmodel"):
        load_registered_model(f"models:/{name}/{empty.version}", storage=storage)


@pytest.mark.stack
def test_an_unknown_model_alias_or_version_is_not_found(
    logged: LoggedModel, own_settings: VelocastSettings
) -> None:
    name = logged.registered_name
    cases = {
        f"models:/{name}@no-such-alias": "alias no-such-alias not found",
        f"models:/{name}/99": r"version=99\) not found",
        f"models:/{name}-nope@champion-dev": f"name={name}-nope not found",
        f"models:/{name}-nope/1": "not found",
    }
    for uri, message in cases.items():
        with pytest.raises(RegisteredModelNotFoundError, match=message) as caught:
            load_registered_model(uri, settings=own_settings)
        assert isinstance(caught.value, NotFoundError) and uri in str(caught.value)
    with pytest.raises(ModelUriError, match="runs:/"):
        load_registered_model("runs:/abc/model", settings=own_settings)
    # The sidecar reports it as a load failure naming the URI and the cause.
    unknown = f"models:/{name}@no-such-alias"
    with pytest.raises(
        ModelLoadError, match=rf"cannot load {unknown}: RegisteredModelNotFoundError: .*not found"
    ):
        load_model_uri(unknown, storage_client(own_settings))


@pytest.mark.stack
def test_a_pyfunc_that_is_not_velocast_is_refused(own_settings: VelocastSettings, tmp_path: Path) -> None:
    plain = register_pyfunc(own_settings, "plain", PlainPyfunc(), {})
    with pytest.raises(
        NotAVelocastPyfuncError, match=r"is not a velocast pyfunc \(no 'velocast_model' artifact"
    ):
        load_registered_model(plain, settings=own_settings)
    with pytest.raises(ModelLoadError, match=rf"cannot load {plain}: NotAVelocastPyfuncError: "):
        load_model_uri(plain, storage_client(own_settings))

    other = tmp_path / "other.joblib"  # the right artifact key, holding someone else's file
    joblib.dump({"format": "someone-else", "model": None}, other)
    foreign = register_pyfunc(own_settings, "foreign", PlainPyfunc(), {MODEL_FILE_KEY: str(other)})
    with pytest.raises(NotAVelocastPyfuncError, match=rf"{foreign} .*is not a velocast model file"):
        load_registered_model(foreign, settings=own_settings)


@pytest.mark.stack
def test_a_missing_model_file_fails_at_once(
    own_settings: VelocastSettings, model: VelocastModel, tmp_path: Path
) -> None:
    uri = register_pyfunc(
        own_settings, "gone", VelocastPyfunc(), {MODEL_FILE_KEY: str(model.save(tmp_path / "hgb.joblib"))}
    )
    name, version = uri.removeprefix("models:/").split("/")
    root = MlflowClient(own_settings.mlflow_tracking_uri).get_model_version_download_uri(name, version)
    repository = get_artifact_repository(root, tracking_uri=own_settings.mlflow_tracking_uri)
    repository.delete_artifacts("artifacts/hgb.joblib")  # type: ignore[no-untyped-call]
    started = time.monotonic()
    with pytest.raises(
        MissingModelArtifactError, match=r"lacks its 'velocast_model' artifact: artifacts/hgb.joblib"
    ):
        load_registered_model(uri, settings=own_settings)
    assert time.monotonic() - started < 5  # MLflow's client retries the proxy's 500 for minutes


@pytest.mark.stack
def test_a_fresh_process_loads_without_importing_mlflow(
    champion: str, logged: LoggedModel, own_settings: VelocastSettings, rows: pd.DataFrame, tmp_path: Path
) -> None:
    probe = tmp_path / "rows.parquet"
    rows.to_parquet(probe)
    child = textwrap.dedent(
        f"""
        import json, sys
        import pandas as pd
        from velocast.ml.model_uri_loader import load_registered_model

        def mlflow_modules():
            return sorted(name for name in sys.modules if name.split(".")[0] == "mlflow")

        rows = pd.read_parquet({str(probe)!r})
        by_alias = load_registered_model({champion!r}).predict(rows)
        after_the_module = mlflow_modules()
        import velocast_serving.main  # a sidecar worker's imports, then its store's loader
        from velocast_serving.model_store import load_model_uri
        from velocast.gcp.clients import storage_client
        from velocast.settings import get_settings

        by_version = load_model_uri({logged.model_uri!r}, storage_client(get_settings())).predict(rows)
        print(json.dumps({{
            "after_the_module": after_the_module,
            "after_the_sidecar": mlflow_modules(),
            "by_alias": by_alias.tolist(),
            "by_version": by_version.tolist(),
        }}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["after_the_module"] == [] and result["after_the_sidecar"] == []
    expected = mlflow_model(own_settings, champion).predict(rows)
    np.testing.assert_array_equal(result["by_alias"], expected)
    np.testing.assert_array_equal(result["by_version"], expected)


# --- against a stand-in tracking server ---------------------------------------------------------


class StandIn(ThreadingHTTPServer):
    """Answers the two registry calls with canned JSON (``answers[path]`` → (status, body))."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StandInHandler)
        self.answers: dict[str, tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def serve(self, artifact_uri: str) -> None:
        self.answers = {
            "/api/2.0/mlflow/registered-models/alias": (
                200,
                {"model_version": {"name": "m", "version": "3"}},
            ),
            "/api/2.0/mlflow/model-versions/get-download-uri": (200, {"artifact_uri": artifact_uri}),
        }


class _StandInHandler(BaseHTTPRequestHandler):
    server: StandIn

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.requests.append((parts.path, parse_qs(parts.query), self.headers.get("Authorization")))
        status, body = self.server.answers.get(parts.path, (404, {"error_code": "ENDPOINT_NOT_FOUND"}))
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[StandIn]:
    for name in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.mlflow/credentials
    server = StandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def model_folder(model: VelocastModel, tmp_path: Path) -> Path:
    """A velocast pyfunc's folder as MLflow writes it (the parts the loader reads)."""
    folder = tmp_path / "model"
    model.save(folder / "artifacts" / "hgb.joblib")
    mlmodel = {
        "flavors": {
            "python_function": {
                "artifacts": {MODEL_FILE_KEY: {"path": "artifacts/hgb.joblib", "uri": "/tmp/hgb.joblib"}},
                "loader_module": "mlflow.pyfunc.model",
                "python_model": "python_model.pkl",
            }
        }
    }
    (folder / "MLmodel").write_text(json.dumps(mlmodel))  # JSON is YAML
    return folder


def at(settings: VelocastSettings, url: str) -> VelocastSettings:
    return settings.model_copy(update={"mlflow_tracking_uri": url})


def test_a_local_store_is_read_from_its_folder(
    stand_in: StandIn,
    model_folder: Path,
    settings: VelocastSettings,
    model: VelocastModel,
    rows: pd.DataFrame,
) -> None:
    for artifact_uri in (model_folder.as_uri(), str(model_folder)):
        stand_in.serve(artifact_uri)
        loaded = load_registered_model("models:/m@champion", settings=at(settings, stand_in.url))
        np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    paths = [(path, query) for path, query, _ in stand_in.requests[:2]]
    assert paths == [
        ("/api/2.0/mlflow/registered-models/alias", {"name": ["m"], "alias": ["champion"]}),
        ("/api/2.0/mlflow/model-versions/get-download-uri", {"name": ["m"], "version": ["3"]}),
    ]
    (model_folder / "artifacts" / "hgb.joblib").unlink()
    with pytest.raises(
        MissingModelArtifactError, match=r"lacks its 'velocast_model' artifact: artifacts/hgb\.joblib"
    ):
        load_registered_model("models:/m@champion", settings=at(settings, stand_in.url))


def test_mlflow_credentials_are_sent_as_mlflow_sends_them(
    stand_in: StandIn, model_folder: Path, settings: VelocastSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_in.serve(model_folder.as_uri())
    own = at(settings, stand_in.url)
    load_registered_model("models:/m/3", settings=own)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "the-token")
    load_registered_model("models:/m/3", settings=own)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ada")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret:x")
    load_registered_model("models:/m/3", settings=own)  # user and password win over a token, as in MLflow
    basic = "Basic " + base64.standard_b64encode(b"ada:s3cret:x").decode()
    assert [auth for _, _, auth in stand_in.requests] == [None, "Bearer the-token", basic]

    stand_in.answers["/api/2.0/mlflow/model-versions/get-download-uri"] = (
        401,
        {"error_code": "UNAUTHENTICATED", "message": "bad credentials"},
    )
    with pytest.raises(TrackingServerError, match=r"answered 401 .*UNAUTHENTICATED: bad credentials"):
        load_registered_model("models:/m/3", settings=own)
    stand_in.answers["/api/2.0/mlflow/model-versions/get-download-uri"] = (503, {"message": "overloaded"})
    with pytest.raises(TrackingServerUnavailableError, match=r"answered 503 .*overloaded"):
        load_registered_model("models:/m/3", settings=own)


def test_an_unreachable_tracking_server_fails_within_seconds(
    settings: VelocastSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(
        TrackingServerUnavailableError, match=f"cannot reach the MLflow tracking server {refused}"
    ):
        load_registered_model("models:/m@champion", settings=at(settings, refused))
    assert time.monotonic() - started < 2

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(TrackingServerUnavailableError, match=f"{url} did not answer") as caught:
            load_registered_model("models:/m@champion", settings=at(settings, url))
        assert time.monotonic() - started < sum(TIMEOUT_SECONDS) + 2
        assert isinstance(caught.value, UnavailableError)
        # The sidecar's store: a ModelLoadError (it keeps the previous model and retries later).
        monkeypatch.setattr(model_uri_loader, "get_settings", lambda: at(settings, url))
        with pytest.raises(ModelLoadError, match=r"TrackingServerUnavailableError: .* did not answer"):
            load_model_uri("models:/m@champion", storage_client(settings))


def test_what_this_module_does_not_read_goes_through_mlflow(
    stand_in: StandIn, settings: VelocastSettings, model: VelocastModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str | None]] = []

    def through_mlflow(model_uri: str, *, settings: VelocastSettings | None = None) -> VelocastModel:
        calls.append((model_uri, settings.mlflow_tracking_uri if settings else None))
        return model

    monkeypatch.setattr(pyfunc, "load_velocast_model", through_mlflow)
    for tracking_uri in ("databricks", "sqlite:///mlflow.db", "file:///tmp/mlruns"):
        assert load_registered_model("models:/m@champion", settings=at(settings, tracking_uri)) is model
    stand_in.serve("s3://bucket/models/m/3")
    assert load_registered_model("models:/m/3", settings=at(settings, stand_in.url)) is model
    monkeypatch.setenv("MLFLOW_TRACKING_AUTH", "my-auth-plugin")
    assert load_registered_model("models:/m/4", settings=at(settings, stand_in.url)) is model
    assert calls == [
        ("models:/m@champion", "databricks"),
        ("models:/m@champion", "sqlite:///mlflow.db"),
        ("models:/m@champion", "file:///tmp/mlruns"),
        ("models:/m/3", stand_in.url),
        ("models:/m/4", stand_in.url),
    ]
    assert len(stand_in.requests) == 1  # the s3:// version was resolved here; the plugin's call was not
