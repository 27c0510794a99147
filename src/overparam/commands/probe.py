"""``overparam probe DIR --run ID --target NAME``: linear probes per layer, with a control task."""

from __future__ import annotations

import argparse

EXAMPLE = """examples:
  overparam probe runs/lm --run 13692b --target next_char_class
  overparam probe runs/lm --run 1369 --target nesting_depth --json
  overparam probe runs/markov --run 07aa --target markov_state
  overparam probe runs/lm --run 1369 --target my_labels.json      # {"text": "...", "labels": [...]}
  overparam probe --hf all-minilm-l6-v2 --target word_position

Targets: char_class, next_char_class, word_position, nesting_depth (text runs), markov_state (markov
runs), or a labels file: JSON {"labels": [one per token, null = none], "text": "..." or "tokens": [...]},
or a text file with one label per line for the first tokens of the test split.
gain = accuracy - baseline accuracy, per layer, with a 95 % t-interval over 5 cross-validation folds
(contiguous blocks of tokens). The baseline is what the current token alone gives: for next_char_class
the bigram statistics of the run's training text, otherwise the same probe on a one-hot of the token.
selectivity = accuracy - control accuracy (Hewitt & Liang 2019: the control gives each token type a
random label, so a probe that only memorizes token identity scores as well on it); it is negative when
the target is less determined by the current token than the control is."""


def register(sub) -> None:
    from overparam.flags import MAX_SEED, int_in

    p = sub.add_parser("probe", help="linear probes on each layer's hidden states, with a control task",
                       epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", help="sweep directory (omit with --hf)")
    p.add_argument("--run", metavar="ID", help="run id (or a unique prefix; see `overparam runs DIR`)")
    p.add_argument("--hf", metavar="MODEL", help="a local Hugging Face model folder, or all-minilm-l6-v2 "
                   "(needs overparam[interp]) instead of DIR --run")
    p.add_argument("--target", required=True, metavar="NAME|FILE", help="what to probe for (see below)")
    p.add_argument("--tokens", type=int, default=4096,
                   help="tokens probed (5 folds: each fits on 80%% and scores the other 20%%)")
    p.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="seed of the control task and the CV folds")
    p.add_argument("--json", action="store_true",
                   help='print {"target": ..., "baseline": {...}, "layers": [{"layer", "accuracy", '
                        '"baseline_accuracy", "gain", "gain_ci", "control_accuracy", "selectivity"}, ...]}')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from overparam.cli import print_json
    from overparam.errors import OverparamError

    if args.tokens < 50:
        raise OverparamError(f"--tokens: at least 50, got {args.tokens}")
    if args.hf:
        if args.dir or args.run:
            raise OverparamError("--hf: give either --hf MODEL or DIR --run ID, not both")
        from overparam.interpret.hf import hf_probe, load_hf

        hf = load_hf(args.hf)
        doc = hf_probe(hf, args.target, args.tokens, args.seed)
        what = hf.describe()
    else:
        if not args.dir or not args.run:
            raise OverparamError("probe: give DIR --run ID (or --hf MODEL)")
        from overparam.interpret.base import load_run
        from overparam.interpret.probes import probe_run

        loaded = load_run(args.dir, args.run)
        doc = probe_run(loaded, args.target, args.tokens, args.seed)
        what = loaded.describe()
    if args.json:
        print_json(doc)
        return 0
    from overparam.interpret.probe_reading import BASELINE_WORDS, read_probe

    base = doc["baseline"]
    print(f"{what}\ntarget {doc['target']}: {doc['classes']} classes, {doc['n_scored']:,} tokens scored over "
          f"{doc['folds']} folds; majority class {doc['majority']:.3f}, control majority {doc['control_majority']:.3f}")
    other = ""
    if base["kind"] == "bigram":
        other = f"; the identity probe: {base['identity_accuracy']:.3f}"
    elif "bigram_accuracy" in base:
        other = f"; the bigram statistics of the training text: {base['bigram_accuracy']:.3f}"
    print(f"baseline: {BASELINE_WORDS[base['kind']]}: {doc['layers'][0]['baseline_accuracy']:.3f}{other}")
    print(table(doc["layers"]))
    for sentence in read_probe(doc):
        print(sentence)
    print("layer 0 is the embedding")
    return 0


def table(layers: list[dict]) -> str:
    rows = [["layer", "accuracy", "baseline", "gain [95 % CI]", "control", "selectivity", "C"]]
    rows += [[str(r["layer"]), f"{r['accuracy']:.3f}", f"{r['baseline_accuracy']:.3f}",
              f"{r['gain']:+.3f} [{r['gain_ci'][0]:+.3f}, {r['gain_ci'][1]:+.3f}]", f"{r['control_accuracy']:.3f}",
              f"{r['selectivity']:+.3f}", f"{r['C']:.3g}"] for r in layers]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows)
