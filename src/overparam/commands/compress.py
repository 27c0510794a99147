"""``overparam compress DIR --run ID``: the compression frontier of one run, in dense-equivalent sizes."""

from __future__ import annotations

import argparse
import sys

EXAMPLE = """examples:
  overparam compress runs/dd --run 071044c10572
  overparam compress runs/dd --run 0710 --prune 0.9,0.95 --quantize int8,int4-g32 --distill-width 32 --json
  overparam compress runs/dd --run 0710 --lottery 0.9,0.97
  overparam compress runs/dd --run 0710 --quantize all

Runs exactly the methods named (--prune, --structured, --quantize, --distill-width, --lottery); with
none named, the default set: --prune 0.5,0.9 --structured 0.5,0.9 --quantize int8,int4 (each pruned
model with and without fine-tuning). Lottery tickets and distillation cost whole training runs and run
only when named. One torch thread (as a sweep; OVERPARAM_THREADS or --threads for more).
Writes DIR/analyses/compress.json (the --json document) and the model files under DIR/compressed/ID/.
Latency is measured on this machine (batch 1 and 64, median and p10-p90 over --repeats calls)."""


def _floats(text: str) -> list[float]:
    from overparam.errors import OverparamError

    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise OverparamError(f"expected comma-separated fractions like 0.5,0.9 (or none), "
                             f"got {text!r}") from None


def _ints(text: str) -> list[int]:
    from overparam.errors import OverparamError

    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise OverparamError(f"--distill-width: expected comma-separated integers like 32,64, "
                             f"got {text!r}") from None


def register(sub) -> None:
    p = sub.add_parser("compress", help="prune, quantize and distill one run; place each on the dense curve",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="sweep directory")
    p.add_argument("--run", required=True, metavar="ID",
                   help="run id (or a unique prefix; see `overparam runs DIR`)")
    p.add_argument("--prune", default=None, metavar="S,…",
                   help="global magnitude-pruning sparsities, each with and without fine-tuning")
    p.add_argument("--structured", "--prune-structured", dest="structured", default=None, metavar="F,…",
                   help="fractions of neurons (and gpt heads) removed per layer, rebuilt smaller, each with "
                        "and without fine-tuning")
    p.add_argument("--structured-by", choices=("norm", "importance"), default="importance",
                   help="rank units by weight norm or by Taylor importance (default)")
    p.add_argument("--lottery", default=None, metavar="S,…",
                   help="lottery-ticket sparsities: iterative magnitude pruning with rewinding, plus the "
                        "random-reinit control (costs one training run per level)")
    p.add_argument("--lottery-rate", type=float, default=0.2,
                   help="share of surviving weights pruned per level")
    p.add_argument("--rewind-step", type=int, default=None,
                   help="rewind to this step (default: 2%% of training)")
    p.add_argument("--quantize", default=None, metavar="SCHEME,…",
                   help="int8, int4, int8-g<N>, int4-g<N>, fp16, bf16, dynamic-int8, ort-int8, or all (every "
                        "scheme this machine can run)")
    p.add_argument("--distill-width", default=None, metavar="W,…",
                   help="student widths (gpt: d_model), each beside a from-scratch student trained as long "
                        "as the run")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation temperature T")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the soft (teacher) term")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="fine-tuning steps after pruning (default: a quarter of the run's steps, >= 50)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and ONNX Runtime")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per latency measurement")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before timing")
    p.add_argument("--threads", type=int, default=None,
                   help="torch (and ONNX Runtime) threads for fine-tuning and timing (default 1, or "
                        "OVERPARAM_THREADS: several threads on a loaded machine were measured up to 10x slower)")
    p.add_argument("--json", action="store_true",
                   help="print {\"models\": [...]} (and nothing else) on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.cli import print_json, print_reading

    if args.threads is not None:
        from overparam.errors import OverparamError
        from overparam.flags import max_threads

        if not 1 <= args.threads <= max_threads():  # torch's OpenMP crashed (SIGSEGV) at 99999
            raise OverparamError(f"--threads: expected 1..{max_threads()}, got {args.threads}")

    def named(text: str | None, parse):
        return None if text is None else parse(text)

    quantize = named(args.quantize, lambda t: [] if t.strip().lower() in ("", "none") else
                     [s.strip() for s in t.split(",") if s.strip()])
    from overparam.compress.frontier import compress_run

    doc = compress_run(args.dir, args.run, prune=named(args.prune, _floats), finetune_steps=args.finetune_steps,
                       prune_structured=named(args.structured, _floats), structured_by=args.structured_by,
                       lottery=named(args.lottery, _floats), lottery_rate=args.lottery_rate,
                       rewind_step=args.rewind_step, quantize=quantize,
                       distill_widths=named(args.distill_width, _ints), temperature=args.temperature,
                       alpha=args.alpha, onnx=False if args.no_onnx else None, repeats=args.repeats,
                       warmup=args.warmup, threads=args.threads,
                       log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.json:
        print_json(doc)
        return 0
    print_reading(table(doc), doc["sentences"])
    for s in doc["skipped"]:
        print(f"skipped: {s}")
    dense = doc["models"][0]
    if "onnxruntime" in dense:
        o = dense["onnxruntime"]
        print(f"ONNX: max |ONNX Runtime - PyTorch| = {o['max_abs_diff']:.2e}; ONNX Runtime fp32 at batch 1: "
              f"{o['latency_ms_b1']:.3f} ms, batch 64: {o['latency_ms_b64']:.3f} ms (median)")
    m = doc["machine"]
    threads = m["torch_threads"]
    print(f"measured on {m['processor']}, {threads} torch thread{'' if threads == 1 else 's'}, load average "
          f"{m.get('load_average')}; latencies are medians (p10-p90) of {doc['settings']['repeats']} calls; "
          f"x b1, x b64: speed-up over the dense model, median of call-by-call ratios timed interleaved")
    return 0


def table(doc: dict) -> str:
    """The frontier as an aligned text table."""
    from overparam.compress.reading import equivalent_text

    metric = doc.get("metric", "test_loss").replace("test_", "")
    rows = [("method", "setting", "variant", "test err", "test loss", "nonzero", "bytes", "b1 ms (p10-p90)",
             "b64 ms", "x b1", "x b64", f"dense-eq params (by {metric})", "seconds")]
    for e in doc["models"]:
        err = "" if e["test_error"] is None else f"{100 * e['test_error']:.2f} %"
        b1 = e["latency_b1"]
        variant = e.get("variant") or (("ft" if e.get("finetuned") else "no ft") if "finetuned" in e else "")
        rows.append((e["method"], "" if e["setting"] is None else str(e["setting"]), variant, err,
                     f"{e['test_loss']:.4f}", f"{e['nonzero_params']:,}", f"{e['bytes']:,}",
                     f"{b1['median']:.3f} ({b1['p10']:.3f}-{b1['p90']:.3f})", f"{e['latency_ms_b64']:.3f}",
                     f"{e['speedup_b1']:.2f}", f"{e['speedup_b64']:.2f}", equivalent_text(e),
                     f"{e.get('seconds', 0):.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
