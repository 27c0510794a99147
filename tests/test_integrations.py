"""Integrations: MLflow (local file store), TensorBoard event files, extras, completion, notebooks.

Each copy is checked against the store it came from (the independent truth here): same runs,
same final metrics, same curve points.
"""

import shutil
import subprocess
import sys

import pytest
import yaml

from overparam.cli import main
from overparam.errors import MissingExtraError
from overparam.store import load_curves, load_runs

SPEC = {"name": "sinks", "task": {"kind": "teacher", "train_size": 100, "test_size": 200, "dim": 20},
        "model": {"family": "mlp", "depth": 1},
        "train": {"optimizer": "adam", "steps": 12, "batch_size": 32, "eval_every": 6},
        "vary": {"model.width": [4, 8]}}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One tiny sweep through the CLI with both sinks; the tests below read its copies."""
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    root = tmp_path_factory.mktemp("sinks")
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    uri = (root / "mlruns").as_uri()
    code = main(["sweep", str(spec), "--out", str(root / "s"), "--no-progress", "--mlflow", uri,
                 "--tensorboard", str(root / "tb")])
    assert code == 0
    yield root, uri
    mp.undo()


def test_mlflow_holds_every_run_with_params_curves_and_final_metrics(swept, monkeypatch):
    from mlflow.tracking import MlflowClient

    root, uri = swept
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sinks")
    logged = {r.data.tags["overparam.run_id"]: r for r in client.search_runs([exp.experiment_id])}
    runs = load_runs(root / "s").set_index("id")
    curves = load_curves(root / "s")
    assert set(logged) == set(runs.index)
    for run_id, mlrun in logged.items():
        assert mlrun.info.status == "FINISHED"
        assert mlrun.data.tags["overparam.sweep"] == "sinks"
        assert mlrun.data.params["model.width"] == str(runs.loc[run_id, "model.width"])
        assert mlrun.data.params["train.optimizer"] == "adam"
        assert mlrun.data.metrics["test_loss"] == pytest.approx(runs.loc[run_id, "test_loss"])
        assert mlrun.data.metrics["params"] == runs.loc[run_id, "params"]
        history = client.get_metric_history(mlrun.info.run_id, "test_loss")
        stored = curves[(curves.run_id == run_id) & (curves.name == "test_loss")]
        assert sorted(m.step for m in history) == sorted(stored.step)


def test_mlflow_copy_is_idempotent(swept, monkeypatch):
    from mlflow.tracking import MlflowClient

    from overparam.integrations import log_store, make_sinks

    root, uri = swept
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert log_store(root / "s", make_sinks(mlflow=uri)) == 2
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sinks")
    assert len(client.search_runs([exp.experiment_id])) == 2  # nothing logged twice


def test_tensorboard_event_files_per_run(swept):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _ = swept
    runs = load_runs(root / "s").set_index("id")
    curves = load_curves(root / "s")
    folders = sorted(p.name for p in (root / "tb" / "sinks").iterdir())
    assert folders == sorted(runs.index)
    for run_id in folders:
        events = EventAccumulator(str(root / "tb" / "sinks" / run_id))
        events.Reload()
        stored = curves[(curves.run_id == run_id) & (curves.name == "test_loss")].sort_values("step")
        got = events.Scalars("test_loss")
        assert [e.step for e in got] == list(stored.step)
        assert [e.value for e in got] == pytest.approx(list(stored.value), rel=1e-6)
        assert events.Scalars("final/test_loss")[-1].value == pytest.approx(runs.loc[run_id, "test_loss"],
                                                                             rel=1e-6)


def test_a_failing_sink_warns_and_the_sweep_goes_on(tmp_path, capsys):
    from overparam.sweep.runner import run_sweep

    class Broken:
        name = "--broken"

        def open(self, sweep, directory):
            pass

        def log_run(self, run):
            raise ConnectionError("server went away")

        def close(self):
            pass

    summary = run_sweep(SPEC, tmp_path / "s", progress=False, sinks=[Broken()])
    assert summary.trained == 2
    assert capsys.readouterr().err.count("--broken: stopped logging") == 1


def test_missing_extra_names_the_pip_install(monkeypatch, tmp_path, capsys):
    for module in ("ray", "mlflow", "tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # import now fails as if not installed
    from overparam.integrations import make_sinks
    from overparam.sweep.ray import RayExecutor
    from overparam.sweep.runner import run_sweep

    with pytest.raises(MissingExtraError, match=r"pip install 'overparam\[mlflow\]'"):
        make_sinks(mlflow="file:///nowhere")
    with pytest.raises(MissingExtraError, match=r"pip install 'overparam\[tensorboard\]'"):
        make_sinks(tensorboard=tmp_path)
    assert RayExecutor  # the module imports without ray; using it needs the extra
    with pytest.raises(MissingExtraError, match=r"pip install 'overparam\[ray\]'"):
        run_sweep(SPEC, tmp_path / "s", executor="ray", progress=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "t"), "--mlflow", "file:///x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("overparam: error:") and "overparam[mlflow]" in err[0]


def test_bash_completion_completes_commands_options_and_choices(capsys):
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out

    def complete(*words):
        line = " ".join(f"'{w}'" for w in words)
        cmd = f'{script}\nCOMP_WORDS=(overparam {line}); COMP_CWORD={len(words)}; _overparam; echo "${{COMPREPLY[@]}}"'
        return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout.split()

    assert "sweep" in complete("sw")
    assert complete("sweep", "--exe") == ["--executor"]
    assert complete("sweep", "--executor", "") == ["local", "ray"]
    assert "ridgeless" in complete("theory", "r")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh not installed")
def test_zsh_completion_is_valid_zsh(tmp_path, capsys):
    assert main(["completion", "zsh"]) == 0
    path = tmp_path / "_overparam"
    path.write_text(capsys.readouterr().out)
    assert subprocess.run(["zsh", "-n", str(path)]).returncode == 0


def test_every_command_help_has_an_example(capsys):
    from overparam.cli import build_parser
    from overparam.commands.completion import describe

    parser = build_parser()
    for cmd in describe(parser):
        with pytest.raises(SystemExit):
            parser.parse_args([cmd.name, "--help"])
        assert "example" in capsys.readouterr().out, f"`overparam {cmd.name} --help` shows no example"


def test_python_dash_m_and_version():
    from overparam import __version__

    out = subprocess.run([sys.executable, "-m", "overparam", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"overparam {__version__}"


def test_notebook_figure_displays_inline(swept):
    from overparam.notebook import Png, figures, show_double_descent

    root, _ = swept
    png = show_double_descent(root / "s")
    assert isinstance(png, Png) and png._repr_png_().startswith(b"\x89PNG")
    assert all(f.startswith(b"\x89PNG") for f in figures(root / "s"))
