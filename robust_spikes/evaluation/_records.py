"""Per-sample evaluation records as JSON lines: append, resume, merge.

A records file starts with one header line ``{"format": ..., "settings": {...},
"fingerprint": {"model": {...}, "data": {...}}}`` (see ``_fingerprint``: a resume with
another model, other data or other settings is refused, and so is a file of another
format version, whose attacks differ) and then
holds one JSON object per evaluated sample, each with an ``"index"``
(:class:`~._sample.SampleRecord`; the settings are :class:`~._settings.EvaluationSettings`,
and this module reads and writes their JSON). Records are appended
one chunk at a time (one ``write`` and an ``fsync``), so a killed process leaves at most a
truncated last line, which :func:`load` drops and :func:`open_for_append` cuts off before
appending. A sample whose record is present is never evaluated again, so nothing is counted
twice and nothing is lost.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from robust_spikes.evaluation import _fingerprint
from robust_spikes.evaluation._sample import SampleRecord
from robust_spikes.evaluation._settings import EvaluationSettings

__all__ = ["FORMAT", "append", "dumps", "load", "open_for_append", "part_paths", "write_atomic"]

# /2: Square and the escalation changed (robust-spikes 0.2); /1 results are not mixed in.
FORMAT = "robust-spikes-records/2"
_FAMILY = "robust-spikes-records/"


def dumps(obj: Any) -> str:
    """One canonical JSON line (sorted keys, no NaN), without the newline."""
    return json.dumps(obj, sort_keys=True, allow_nan=False, separators=(",", ":"))


def part_paths(path: Path) -> list[Path]:
    """Per-process part files of ``path`` left by a distributed run (``NAME.part-R``)."""
    if not path.parent.is_dir():
        return []
    prefix = path.name + ".part-"
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))


def _read(path: Path) -> tuple[dict[str, Any] | None, list[SampleRecord], int]:
    """``(header, records, good_bytes)``: ``good_bytes`` ends the last complete line."""
    raw = path.read_bytes()
    header: dict[str, Any] | None = None
    records: list[SampleRecord] = []
    good = 0
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        if last and not line:
            break  # the file ends with a newline
        try:
            obj = json.loads(line)
        except ValueError:
            if last:  # no newline after it: a write cut short by a killed process
                break
            raise ValueError(
                f"records file {str(path)!r} is corrupt at line {number}: {line[:80]!r}"
            ) from None
        if last:  # complete JSON but no newline: treat as cut short too
            break
        if number == 1:
            found = obj.get("format") if isinstance(obj, dict) else None
            if isinstance(found, str) and found.startswith(_FAMILY) and found != FORMAT:
                raise ValueError(
                    f"{str(path)!r} holds {found!r} records, written by another version of "
                    f"robust-spikes whose attacks differ from this one's ({FORMAT!r}): its "
                    "results cannot be resumed or mixed with new ones; evaluate to a new path"
                )
            if found != FORMAT:
                raise ValueError(
                    f"{str(path)!r} is not a robust-spikes records file (its first line is "
                    f"not a {FORMAT!r} header)"
                )
            header = obj
        else:
            if not isinstance(obj, dict) or not isinstance(obj.get("index"), int):
                raise ValueError(f"records file {str(path)!r}: line {number} has no index")
            try:
                records.append(SampleRecord.from_json(obj))
            except ValueError as err:
                raise ValueError(f"records file {str(path)!r}: line {number}: {err}") from None
        good += len(line) + 1
    return header, records, good


_MISSING = object()


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide the records: without the radii certified accuracy is
    summarised at (they only shape the report) and with no certification the same as a
    header written before certification existed."""
    out = dict(settings)
    certify = out.pop("certify", None)
    if certify is not None:
        out["certify"] = {k: v for k, v in certify.items() if k != "radii"}
    return out


def _check_fingerprint(file: Path, header: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Refuse a file written for another model or other data, or without a fingerprint."""
    written = header.get("fingerprint")
    if not isinstance(written, dict):
        raise ValueError(
            f"records file {str(file)!r} was written by an older robust-spikes without a "
            "fingerprint of the model and the data, so the model and data its records belong "
            "to are unknown; use a new records path or delete it"
        )
    for key, what in (("model", "another model"), ("data", "other data")):
        differ = _fingerprint.differences(written.get(key) or {}, fingerprint[key])
        if differ:
            raise ValueError(
                f"records file {str(file)!r} was written for {what} ({'; '.join(differ)}); "
                "use a new records path or delete it"
            )


def load(
    path: Path,
    settings: EvaluationSettings | None = None,
    fingerprint: dict[str, Any] | None = None,
) -> tuple[EvaluationSettings | None, dict[int, SampleRecord]]:
    """Header and records (by index) of ``path`` and of its part files.

    Args:
        path: the records file (it and its parts may be missing).
        settings: if given, every header must hold these settings (up to the
            certification radii, which only shape the report).
        fingerprint: if given, every header must hold this fingerprint of the model and
            the data (``{"model": ..., "data": ...}``, see ``_fingerprint``); a header
            without one (an older version's file) is refused.

    Returns:
        ``(settings of the first header found or None, {index: record})``.

    Raises:
        ValueError: a file that is not a records file, is corrupt before its last line,
            was written for another model, other data or with other settings (the message
            names what differs), or has no fingerprint while one is asked for.
    """
    found: dict[str, Any] | None = None
    expected = None if settings is None else _comparable(settings.to_json())
    records: dict[int, SampleRecord] = {}
    for file in [path, *part_paths(path)]:
        if not file.is_file() or file.stat().st_size == 0:
            continue
        header, rows, _ = _read(file)
        if header is None:
            continue
        if fingerprint is not None:
            _check_fingerprint(file, header, fingerprint)
        written = header.get("settings", {})
        if expected is not None and _comparable(written) != expected:
            a, b = _comparable(written), expected
            keys = sorted(k for k in {*a, *b} if a.get(k, _MISSING) != b.get(k, _MISSING))
            raise ValueError(
                f"records {str(file)!r} were written with other settings (differing: "
                f"{', '.join(keys)}); use another records path or the same settings"
            )
        found = written if found is None else found
        for row in rows:
            records.setdefault(row.index, row)
    return (None if found is None else EvaluationSettings.from_json(found)), records


def _header(settings: EvaluationSettings, fingerprint: dict[str, Any]) -> str:
    header = {"format": FORMAT, "settings": settings.to_json(), "fingerprint": fingerprint}
    return dumps(header) + "\n"


def open_for_append(
    path: Path, settings: EvaluationSettings, fingerprint: dict[str, Any]
) -> IO[str]:
    """Open ``path`` for appending records, writing the header if it is new.

    A truncated last line (from a killed process) is cut off first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size > 0:
        header, _, good = _read(path)
        if header is None:  # only a truncated header: start over
            good = 0
        os.truncate(path, good)
    stream = path.open("a", encoding="utf-8")
    if stream.tell() == 0:
        stream.write(_header(settings, fingerprint))
        _sync(stream)
    return stream


def append(stream: IO[str], records: Iterable[SampleRecord]) -> None:
    """Append ``records`` in one write, then flush and fsync."""
    text = "".join(dumps(r.to_json()) + "\n" for r in records)
    if text:
        stream.write(text)
        _sync(stream)


def write_atomic(
    path: Path,
    settings: EvaluationSettings,
    records: Iterable[SampleRecord],
    fingerprint: dict[str, Any],
) -> None:
    """Write a complete records file (header, records by index) through a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(_header(settings, fingerprint))
            for record in sorted(records, key=lambda r: r.index):
                stream.write(dumps(record.to_json()) + "\n")
            _sync(stream)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sync(stream: IO[str]) -> None:
    stream.flush()
    os.fsync(stream.fileno())
