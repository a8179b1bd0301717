"""The ``robust-spikes`` command line.

Each subcommand is one entry of :data:`COMMANDS`: a one-line summary, a function that adds
its arguments to an :class:`argparse.ArgumentParser`, and a handler that runs it and
returns the exit status. Adding a subcommand (``evaluate``, ``certify``) means writing
those two functions and adding one entry; :func:`build_parser` does the rest.
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
from robust_spikes.demo import DEFAULT_EPS, format_eps, run_demo

__all__ = ["COMMANDS", "Command", "build_parser", "main", "parse_eps", "positive_int"]

PROG = "robust-spikes"

_DESCRIPTION = """\
robust-spikes measures and improves the adversarial robustness of spiking neural
networks built with snnTorch or SpikingJelly. It wraps a spiking network as an ordinary
images -> logits PyTorch module (resetting its neuron state on every call), so that
standard attack libraries such as torchattacks run against it unmodified, and reports
clean and robust accuracy under L-inf attacks with radii eps in the [0, 1] image scale.
"""

_EPILOG = f"""\
example:
  {PROG} demo --epochs 8 --eps 0 4/255 8/255 --json results.json

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
        "--epochs", type=positive_int, default=8, help="training epochs (default: %(default)s)"
    )
    parser.add_argument(
        "--num-steps",
        type=positive_int,
        default=4,
        metavar="T",
        help="simulation time steps per image (default: %(default)s)",
    )
    parser.add_argument(
        "--eps",
        type=parse_eps,
        nargs="+",
        default=list(DEFAULT_EPS),
        metavar="EPS",
        help="L-inf attack radii in the [0, 1] image scale, as floats or fractions like 8/255 "
        f"(default: {' '.join(format_eps(e) for e in DEFAULT_EPS)})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the split, training and attacks (default: 0)"
    )
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="do not show progress bars on stderr",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="also write the results as JSON to PATH (accuracies as fractions in [0, 1])",
    )


def _run_demo(args: argparse.Namespace) -> int:
    json_path: Path | None = args.json
    if json_path is not None and not json_path.parent.is_dir():
        raise _UsageError(f"--json: directory {str(json_path.parent)!r} does not exist")
    result = run_demo(
        epochs=args.epochs,
        num_steps=args.num_steps,
        eps=args.eps,
        seed=args.seed,
        progress=args.progress,
        out=sys.stdout,
    )
    if json_path is not None:
        # JSON object keys are strings: the eps keys become e.g. "0.03137254901960784".
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"\nWrote {json_path}")
    return 0


# --------------------------------------------------------------------------- registry
class Command(NamedTuple):
    """One subcommand: its ``--help`` summary, its arguments and what it runs."""

    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "demo": Command(
        summary="train a small snnTorch SNN on the 8x8 digits and attack it with FGSM and PGD",
        add_arguments=_add_demo_arguments,
        handler=_run_demo,
    ),
}


class _UsageError(ValueError):
    """Raised by a handler for a bad combination of arguments; reported as a usage error."""


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
    except _UsageError as err:
        subparser: argparse.ArgumentParser = args._subparser
        subparser.error(str(err))  # exits with status 2
    except ImportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
