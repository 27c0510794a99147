"""A token-authenticated Ray cluster reached without the token (issue 19): one quiet probe, one line,
nothing created. The cluster is stood in for by a gRPC server answering the one request the probe
makes (``NodeInfoGcsService.GetClusterId``) the way Ray's GCS does: UNAUTHENTICATED unless the
``authorization: Bearer <token>`` header carries its token. Measured against a real `ray start --head`
with RAY_AUTH_MODE=token: 24 s and 21 stderr lines before the probe, 2 s and one line after."""

from __future__ import annotations

import io
import time
from concurrent import futures
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

grpc = pytest.importorskip("grpc")
pytest.importorskip("ray")
from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc  # noqa: E402

from overparam.cli import main  # noqa: E402
from overparam.errors import OverparamError  # noqa: E402
from overparam.sweep.ray import RayExecutor  # noqa: E402

TOKEN = "0123456789abcdef0123456789abcdef"


class TokenGcs(gcs_service_pb2_grpc.NodeInfoGcsServiceServicer):
    def GetClusterId(self, request, context):  # noqa: N802 (the RPC's name)
        if dict(context.invocation_metadata()).get("authorization") != f"Bearer {TOKEN}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken: token missing or incorrect")
        return gcs_service_pb2.GetClusterIdReply()


@pytest.fixture
def cluster():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gcs_service_pb2_grpc.add_NodeInfoGcsServiceServicer_to_server(TokenGcs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


@pytest.mark.parametrize("env, said", [
    ({}, "sent no token; set RAY_AUTH_MODE=token"),
    ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "wrong"}, "is not the cluster's"),
])
def test_no_token_or_a_wrong_one_is_one_line_before_anything_exists(cluster, env, said, tmp_path, monkeypatch):
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token of the machine's
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = tmp_path / "s.yaml"
    spec.write_text("task: {kind: digits, train_size: 100}\nmodel: {family: mlp, width: 4}\ntrain: {steps: 3}\n")
    err = io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "ray", "--address", cluster,
                     "--no-progress"])
    assert time.perf_counter() - start < 5
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"overparam: error: --address {cluster}: "), lines
    assert said in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_right_token_from_the_default_file_passes_the_probe(cluster, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(TOKEN + "\n")
    RayExecutor(torch.device("cpu"), address=cluster)  # probes in __init__; ray.init comes later, in execute
    monkeypatch.setenv("RAY_AUTH_TOKEN", "stale")  # the variable comes first, as in Ray
    with pytest.raises(OverparamError, match="is not the cluster's"):
        RayExecutor(torch.device("cpu"), address=cluster)
    assert Path(tmp_path / ".ray" / "auth_token").read_text().strip() == TOKEN
