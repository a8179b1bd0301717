"""``python -m robust_spikes``: the ``robust-spikes`` command (:mod:`robust_spikes.app.cli`)."""

from robust_spikes.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
