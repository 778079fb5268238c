"""fastmask predict RUN_DIR|MODEL.safetensors ... --eval DIR [--tta N] [--weights w1,w2] [--vote soft|hard] [--trust-pickle] [--quiet] --out submission.csv

Predicts the evaluation images with one model or an ensemble and writes ImageID,ans in info.csv order.
Models load from their safetensors + JSON files, which hold no code; a pickle (.pkl) only with --trust-pickle."""  # noqa: E501  (line 1: the usage line, kept whole)
import sys

from fastmask import console
from fastmask.errors import Parser


def parse(argv):
    ap = Parser(prog=console.prog("predict"), description=" ".join(__doc__.split("\n\n", 1)[1].split()))
    ap.add_argument("models", nargs="+", metavar="RUN_DIR|MODEL.safetensors",
                    help="a run folder means all its fold models (fold*.safetensors), else its model.safetensors; "
                         "a .safetensors or .json file means that model; a .pkl needs --trust-pickle")
    ap.add_argument("--eval", required=True, metavar="DIR", 
                    help="the folder holding info.csv and images/, or the one holding eval/")
    ap.add_argument("--out", default="submission.csv", help="submission file (default: submission.csv)")
    ap.add_argument("--tta", type=int, default=0, metavar="N", help="test-time augmentation passes (default 0: plain)")
    ap.add_argument("--weights", metavar="W1,W2,...", help="one weight per MODEL argument (a run folder's folds share it)")
    ap.add_argument("--vote", choices=("soft", "hard"), default="soft",
                    help="soft: mean probabilities (default); hard: majority of argmaxes")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="open .pkl exports (fastai's load_learner): a pickle runs the code it names, "
                         "so only for files you trust")
    ap.add_argument("--bs", type=int, default=None, help="batch size (default: the learner's)")
    ap.add_argument("--quiet", action="store_true",
                    help=f"no progress bar or model list: the result lines only (or {console.ENV_QUIET}=1)")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    return ap.parse_args(argv)


def parse_weights(text):
    from fastmask.errors import FastmaskError
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise FastmaskError(f"--weights: {text!r} is not comma-separated numbers") from None


def main(argv):
    args = parse(argv)
    with console.using(console.QUIET if args.quiet else None):
        return _predict(args, quiet=console.quiet())


def _predict(args, quiet):
    from fastmask.data.layout import read_answers, read_eval
    from fastmask.errors import FastmaskError
    from fastmask.models.load import load_models
    from fastmask.models.predict import predict
    from fastmask.models.submission import check_out, check_out_reads, eval_root, write_submission
    if args.tta < 0:
        raise FastmaskError(f"--tta: {args.tta} is negative")
    if args.bs is not None and args.bs < 1:
        raise FastmaskError(f"--bs: {args.bs} is not a batch size (an int >= 1)")
    check_out(args.out)  # a bad --out fails now, not after every model has run
    weights = parse_weights(args.weights)
    root = eval_root(args.eval)
    check_out_reads(args.out, args.models, root)  # before loading: the submission must not replace an input
    ev = read_eval(root)
    answers = read_answers(root)
    models = load_models(args.models, weights, trust_pickle=args.trust_pickle)
    if not quiet:
        print(f"{len(models)} model(s): " + ", ".join(str(m.path) for m in models), file=sys.stderr)
    pred = predict(models, ev["path"].tolist(), tta=args.tta, how=args.vote, bs=args.bs, progress=not quiet)
    out = write_submission(ev["ImageID"], pred.ans, args.out)
    print(f"wrote {out} ({len(ev)} rows, {args.vote} vote of {len(models)} model(s)"
          + (f", TTA {args.tta}" if args.tta else "") + ")")
    if answers is not None:
        from fastmask.learn.metrics import scores
        s = scores(answers["ans"].to_numpy(), pred.ans)
        print(f"answers.csv: macro F1 {s['macro_f1']:.4f}, accuracy {s['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    from fastmask.errors import cli
    sys.exit(cli(main)())
