"""Application code: the ``robust-spikes`` command (:mod:`.cli`) and the demo (:mod:`.demo`).

The library never imports this package; it only calls the library's public API.
"""
