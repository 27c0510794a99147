"""Reliability in figures: kill torture, concurrent writers, divergence, bad and hostile input, full disks.

Run: ``python benchmarks/reliability.py [--kills 30] [--seed 0] [--random 300] [--table docs/reliability.md]``.
Prints one line per study, a final line of counts, and (``--table``) writes the markdown table of
docs/reliability.md. Studies:

- kill torture: SIGKILL a sweep at random moments, rerun; finished runs lost/retrained, integrity;
- concurrent writers, divergence (one diverging member leaves the others identical);
- the bad-input corpus (tests/bad_input_corpus.py, in this process);
- the hostile corpus (tests/hostile_corpus.py), each case a child process with a 60 s timeout, so
  that a hang is counted rather than waited on: cases tried, exit-2 share, internal errors, hangs;
- random YAML specs of any shape and type (the hypothesis strategy of tests/test_hostile.py);
- a disk that fills mid-sweep (a small tmpfs, where this machine lets us mount one): the error line,
  finished runs intact, and the rerun after freeing space equal to an uninterrupted sweep;
- a read-only file system: runs / analyze / report --out work, sweep refused in one line.

The test suite checks a smaller version of each (tests/test_store_resume.py, tests/test_reliability.py,
tests/test_hostile.py, tests/test_cli.py).
"""

from __future__ import annotations

import argparse
import contextlib
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


def hostile(tmp: Path, timeout: float) -> dict:
    from bad_input_corpus import make_good_store
    from hostile_corpus import CASES, run_hostile, summarize

    good = make_good_store(tmp / "good-hostile")
    results = []
    for i, case in enumerate(CASES):
        where = tmp / f"hostile-{i}"
        where.mkdir()
        results.append(run_hostile(case, where, good, subprocess_timeout=timeout))
    return {"by_class": summarize(results), "failures": [f"{r.case.name}: {r.why}" for r in results if not r.ok],
            "slowest": max((r.seconds, r.case.name) for r in results)}


def random_specs(tmp: Path, n: int, seed: int) -> dict:
    """``n`` random YAML specs through the CLI in this process (data loading stubbed: specs only)."""
    import contextlib
    import io
    from unittest import mock

    from bad_input_corpus import make_good_store
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from test_hostile import Accepted, _dump, specs

    from overparam.cli import main as cli_main

    good = make_good_store(tmp / "good-random")
    counts = {"tried": 0, "exit2": 0, "accepted": 0, "internal": 0, "not_one_line": 0, "slow": 0, "max_s": 0.0}

    @hseed(seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec=specs())
    def one(spec):
        text = _dump(spec)
        if text is None:
            return
        path = tmp / "random.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        err = io.StringIO()
        start = time.perf_counter()
        with mock.patch("overparam.sweep.runner.load_sweep_task", side_effect=Accepted("spec accepted")), \
                contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["sweep", str(path), "--out", str(good), "--no-progress"])
        took = time.perf_counter() - start
        lines = err.getvalue().strip().splitlines()
        counts["tried"] += 1
        counts["exit2"] += code == 2
        counts["accepted"] += "spec accepted" in err.getvalue()
        counts["internal"] += code == 1 or "internal error" in err.getvalue()
        counts["not_one_line"] += len(lines) != 1
        counts["slow"] += took > 5.0
        counts["max_s"] = round(max(counts["max_s"], took), 3)

    one()
    return counts


@contextlib.contextmanager
def _tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


FULL_SPEC = {"name": "full", "task": {"kind": "digits", "train_size": 100}, "model": {"family": "mlp"},
             "train": {"steps": 30}, "vary": {"model.width": [4, 8, 16, 1024]}}


def disk_full(tmp: Path) -> dict:
    """Sweeps onto tmpfs disks of several sizes; each fails somewhere, then resumes after the disk grows."""
    from overparam.store import load_runs

    spec = tmp / "full.yaml"
    spec.write_text(yaml.safe_dump(FULL_SPEC))
    ref = tmp / "full-ref"
    subprocess.run(sweep_cmd(spec, ref) + ["--fuse", "off"], check=True, capture_output=True)
    want = load_runs(ref).set_index("id")["test_loss"].sort_index()
    rows = []
    for size in ("12k", "48k", "100k", "160k", "220k"):
        with _tmpfs(tmp / f"disk-{size}", size) as disk:
            if disk is None:
                return {"skipped": "cannot mount a tmpfs here"}
            out = disk / "s"
            first = subprocess.run(sweep_cmd(spec, out) + ["--fuse", "off"], capture_output=True, text=True)
            lines = first.stderr.strip().splitlines()
            before = done_rows(out)
            subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True, capture_output=True)
            second = subprocess.run(sweep_cmd(spec, out) + ["--fuse", "off"], capture_output=True, text=True)
            after = done_rows(out)
            got = load_runs(out).set_index("id")["test_loss"].sort_index() if second.returncode == 0 else None
            rows.append({"size": size, "exit": first.returncode, "one_line": len(lines) == 1,
                         "internal": "internal error" in first.stderr, "done_before": len(before),
                         "intact": all(after.get(k) == v for k, v in before.items()),
                         "rerun_exit": second.returncode, "done_after": len(after),
                         "equal_to_uninterrupted": got is not None and got.equals(want),
                         "message": lines[-1][:110] if lines else ""})
    return {"rows": rows}


def read_only(tmp: Path) -> dict:
    import shutil

    from bad_input_corpus import make_good_store

    good = make_good_store(tmp / "good-ro")
    spec = tmp / "ro.yaml"
    spec.write_text(yaml.safe_dump(FULL_SPEC))
    with _tmpfs(tmp / "ro", "4m") as ro:
        if ro is None:
            return {"skipped": "cannot mount a tmpfs here"}
        shutil.copytree(good, ro / "s")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True, capture_output=True)
        op = [sys.executable, "-m", "overparam"]
        checks = {"runs": op + ["runs", str(ro / "s"), "--json"], "analyze": op + ["analyze", str(ro / "s"), "--json"],
                  "report --out": op + ["report", str(ro / "s"), "--out", str(tmp / "ro-report")],
                  "report (in place)": op + ["report", str(ro / "s")], "sweep": sweep_cmd(spec, ro / "s")}
        out = {}
        for name, cmd in checks.items():
            proc = subprocess.run(cmd, capture_output=True, text=True)
            out[name] = {"exit": proc.returncode, "last": (proc.stderr.strip().splitlines() or [""])[-1][:100]}
        subprocess.run(["mount", "-o", "remount,rw", str(ro)], capture_output=True)
    return out


def table(kill: dict, bad: dict, host: dict, rnd: dict, full: dict, ro: dict) -> str:
    """The markdown of docs/reliability.md's results table."""
    lines = ["| class | cases tried | handled | exit 2 | internal errors | hangs |", "|---|---|---|---|---|---|"]
    total = {"tried": 0, "handled": 0, "exit2": 0, "internal": 0, "hangs": 0}
    for kind, row in host["by_class"].items():
        lines.append(f"| {kind} | {row['tried']} | {row['handled']} | {row['exit2']} | {row['internal']} | "
                     f"{row['hangs']} |")
        for key in total:
            total[key] += row[key]
    lines.append(f"| bad-input corpus (earlier issues) | {bad['total']} | {bad['handled']} | – | "
                 f"{sum('internal' in f for f in bad['failures'])} | 0 |")
    handled = rnd["tried"] - rnd["internal"] - rnd["not_one_line"]
    lines.append(f"| random YAML specs (hypothesis) | {rnd['tried']} | {handled} | {rnd['exit2']} | "
                 f"{rnd['internal']} | {rnd['slow']} (> 5 s) |")
    tried = total["tried"] + bad["total"] + rnd["tried"]
    exit2 = total["exit2"] + rnd["exit2"]
    lines.append(f"| **all** | **{tried}** | | **{exit2}** | **{total['internal'] + rnd['internal']}** | "
                 f"**{total['hangs'] + rnd['slow']}** |")
    lines += ["", f"Kill torture: {kill['kills']} SIGKILLs ({kill['kills_mid_sweep']} mid-sweep): "
              f"{kill['finished_lost']} finished runs lost, {kill['finished_retrained']} retrained, "
              f"{kill['duplicated']} duplicated, integrity {kill['integrity']}, results equal to an uninterrupted "
              f"sweep: {kill['equal_to_uninterrupted']}.", ""]
    if "rows" in full:
        lines += ["| disk size | first exit | one line | done before | intact | rerun exit | done after | "
                  "equal to uninterrupted | message |", "|---|---|---|---|---|---|---|---|---|"]
        for r in full["rows"]:
            lines.append(f"| {r['size']} | {r['exit']} | {r['one_line']} | {r['done_before']} | {r['intact']} | "
                         f"{r['rerun_exit']} | {r['done_after']} | {r['equal_to_uninterrupted']} | "
                         f"{r['message'].replace('|', '/')} |")
    else:
        lines.append(f"Disk full: {full.get('skipped')}")
    if "skipped" not in ro:
        lines += ["", "| read-only store | exit | last stderr line |", "|---|---|---|"]
        lines += [f"| {k} | {v['exit']} | {v['last'].replace('|', '/')} |" for k, v in ro.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random", type=int, default=300, help="random YAML specs to try")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds before a hostile case counts as a hang")
    parser.add_argument("--table", default=None, help="also write the markdown results table to this file")
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
        t = time.time()
        host = hostile(tmp, args.timeout)
        print(f"hostile corpus ({time.time() - t:.0f} s): {host}", flush=True)
        rnd = random_specs(tmp, args.random, args.seed)
        print(f"random specs: {rnd}", flush=True)
        full = disk_full(tmp)
        print(f"disk full: {full}", flush=True)
        ro = read_only(tmp)
        print(f"read-only: {ro}", flush=True)
    tried = sum(r["tried"] for r in host["by_class"].values()) + bad["total"] + rnd["tried"]
    internal = sum(r["internal"] for r in host["by_class"].values()) + rnd["internal"]
    hangs = sum(r["hangs"] for r in host["by_class"].values()) + rnd["slow"]
    exit2 = sum(r["exit2"] for r in host["by_class"].values()) + rnd["exit2"]
    print(f"SUMMARY finished_lost={kill['finished_lost']} retrained={kill['finished_retrained']} "
          f"duplicated={kill['duplicated']} integrity={kill['integrity']} equal={kill['equal_to_uninterrupted']} "
          f"second_writer_exit={conc['second_exit']} diverged_isolated={div['others_identical']} "
          f"bad_inputs={bad['handled']}/{bad['total']} cases_tried={tried} "
          f"exit2_share={exit2 / max(tried - bad['total'], 1):.3f} internal_errors={internal} hangs={hangs} "
          f"hostile_failures={len(host['failures'])}")
    if args.table:
        Path(args.table).write_text(table(kill, bad, host, rnd, full, ro))
    return 0


if __name__ == "__main__":
    sys.exit(main())
