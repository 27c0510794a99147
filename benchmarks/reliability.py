"""Reliability in figures: kill torture, concurrent writers, divergence, the bad-input corpus.

Run: ``python benchmarks/reliability.py [--kills 30] [--seed 0]``. Prints one line per study and a
final line of counts. The test suite checks a smaller version of each (tests/test_store_resume.py,
tests/test_reliability.py, tests/test_cli.py).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SPEC = {"name": "torture", "task": {"kind": "digits", "train_size": 300},
        "model": {"family": "mlp", "depth": 1},
        "train": {"optimizer": "adam", "steps": 200, "batch_size": 64, "eval_every": 50},
        "vary": {"model.width": [4, 8, 16, 32, 64, 128], "seed": [0, 1]}}


def done_rows(directory: Path) -> dict[str, float]:
    if not (directory / "overparam.sqlite").is_file():
        return {}
    con = sqlite3.connect(directory / "overparam.sqlite", timeout=30)
    try:
        return dict(con.execute("SELECT id, finished_at FROM runs WHERE status='done'").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def sweep_cmd(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "overparam", "sweep", str(spec), "--out", str(out), "--no-progress"]


def kill_torture(tmp: Path, kills: int, rng: random.Random) -> dict:
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp / "killed"
    seen: dict[str, float] = {}
    lost = retrained = landed = 0
    for _ in range(kills):
        proc = subprocess.Popen(sweep_cmd(spec, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 6.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            landed += 1
        proc.wait()
        now = done_rows(out)
        lost += sum(1 for k in seen if k not in now)
        retrained += sum(1 for k, v in seen.items() if k in now and now[k] != v)
        seen.update(now)
        if len(now) == len(SPEC["vary"]["model.width"]) * 2:
            # everything finished: start over in a fresh directory so every kill lands mid-sweep
            out = tmp / f"killed-{landed}"
            seen = {}
    final = subprocess.run(sweep_cmd(spec, out), capture_output=True, text=True)
    con = sqlite3.connect(out / "overparam.sqlite")
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    rows = con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs").fetchone()
    con.close()
    ref = tmp / "reference"
    subprocess.run(sweep_cmd(spec, ref), check=True, capture_output=True)
    from overparam.store import load_runs

    a = load_runs(out).set_index("id").sort_index()
    b = load_runs(ref).set_index("id").sort_index()
    equal = list(a.index) == list(b.index) and bool((a["test_loss"] == b["test_loss"]).all())
    return {"kills": kills, "kills_mid_sweep": landed, "finished_lost": lost, "finished_retrained": retrained,
            "duplicated": rows[0] - rows[1], "integrity": integrity, "equal_to_uninterrupted": equal,
            "final_exit": final.returncode}


def concurrent_writers(tmp: Path) -> dict:
    spec = tmp / "spec2.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "train": {**SPEC["train"], "steps": 400}}))
    out = tmp / "shared"
    first = subprocess.Popen(sweep_cmd(spec, out) + ["--fuse", "off"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    while not done_rows(out) and first.poll() is None:
        time.sleep(0.1)
    second = subprocess.run(sweep_cmd(spec, out) + ["--fuse", "off"], capture_output=True, text=True)
    reader = subprocess.run([sys.executable, "-m", "overparam", "runs", str(out), "--json"], capture_output=True,
                            text=True)
    first.wait()
    con = sqlite3.connect(out / "overparam.sqlite")
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    con.close()
    return {"second_exit": second.returncode, "second_message": second.stderr.strip().splitlines()[-1:],
            "reader_exit_while_writing": reader.returncode, "first_exit": first.returncode, "integrity": integrity}


def divergence(tmp: Path) -> dict:
    from overparam.store import load_runs
    from overparam.sweep.runner import run_sweep

    base = {"task": {"kind": "digits", "train_size": 300}, "model": {"family": "mlp", "width": 32},
            "train": {"optimizer": "sgd", "loss": "mse", "steps": 100}}
    with_bad = {**base, "vary": {"train.lr": [0.01, 0.03, 1.0e5]}}
    without = {**base, "vary": {"train.lr": [0.01, 0.03]}}
    run_sweep(with_bad, tmp / "div", progress=False, fuse="on")
    run_sweep(without, tmp / "nodiv", progress=False, fuse="on")
    a, b = load_runs(tmp / "div"), load_runs(tmp / "nodiv")
    statuses = dict(zip(a["train.lr"], a["status"]))
    same = all(a.loc[a["train.lr"] == lr, "test_loss"].iloc[0] == b.loc[b["train.lr"] == lr, "test_loss"].iloc[0]
               for lr in (0.01, 0.03))
    return {"statuses": statuses, "others_identical": same}


def bad_inputs(tmp: Path) -> dict:
    from bad_input_corpus import CASES, make_good_store, run_case

    good = make_good_store(tmp / "good")
    results = [run_case(case, tmp, good) for case in CASES]
    failures = [f"{r.case.name}: {r.why}" for r in results if not r.ok]
    return {"handled": len(results) - len(failures), "total": len(results), "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.time()
        kill = kill_torture(tmp, args.kills, rng)
        print(f"kill torture ({time.time() - t:.0f} s): {kill}", flush=True)
        conc = concurrent_writers(tmp)
        print(f"concurrent writers: {conc}", flush=True)
        div = divergence(tmp)
        print(f"divergence: {div}", flush=True)
        bad = bad_inputs(tmp)
        print(f"bad-input corpus: {bad['handled']}/{bad['total']} handled; failures: {bad['failures']}", flush=True)
    print(f"SUMMARY finished_lost={kill['finished_lost']} retrained={kill['finished_retrained']} "
          f"duplicated={kill['duplicated']} integrity={kill['integrity']} equal={kill['equal_to_uninterrupted']} "
          f"second_writer_exit={conc['second_exit']} diverged_isolated={div['others_identical']} "
          f"bad_inputs={bad['handled']}/{bad['total']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
