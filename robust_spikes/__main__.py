"""``python -m robust_spikes``: the ``robust-spikes`` command line (:mod:`robust_spikes.cli`)."""

from robust_spikes.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
