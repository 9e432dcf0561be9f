"""Command line: ``python -m alignment.nlp parse|context``.

``parse`` reads JSON Lines ``{"id", "text"}`` (or, when the input is not JSON Lines, the whole input as
one report) and writes one JSON line per report.  ``context`` reads ``{"id", "sentence", "target"}``
lines and writes ``{"id", "negated", "uncertain", "historical", "hypothetical", "experiencer"}``.
A bad record gets one error line on stderr and the rest are still processed; the exit status is non-zero
only when nothing could be processed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from .lexicons import LEXICON_SYSTEMS
from .parser import classify_context, parse_reports

_BATCH = 256


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as fh:
        return fh.read()


def _decode(raw: bytes) -> str | None:
    """Text of the input, or ``None`` for binary data (NUL bytes or not UTF-8)."""
    if b"\x00" in raw:
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _records(raw: bytes, err: TextIO) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, object or None when the line is not a JSON object); each line is decoded on its
    own, so one binary or mis-encoded record does not lose the others."""
    for n, raw_line in enumerate(raw.splitlines(), start=1):
        line = _decode(raw_line)
        if line is None:
            err.write(f"line {n}: binary or non-UTF-8 data\n")
            yield n, None
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            err.write(f"line {n}: not JSON ({exc.msg})\n")
            yield n, None
            continue
        if not isinstance(obj, dict):
            err.write(f"line {n}: not a JSON object\n")
            yield n, None
            continue
        yield n, obj


def _flush(batch: list[tuple[Any, str]], args: argparse.Namespace, out: TextIO) -> int:
    reports = parse_reports([t for _, t in batch], language=args.language, lexicon=args.lexicon)
    for (rid, _), report in zip(batch, reports, strict=True):
        out.write(json.dumps({"id": rid, **report.to_dict()}, ensure_ascii=False) + "\n")
    batch.clear()
    return len(reports)


def cmd_parse(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    raw = _read(args.file)
    text = _decode(raw)
    jsonl = raw.lstrip()[:1] == b"{"
    if text is None and not jsonl:
        err.write(f"{args.file}: binary input, expected UTF-8 text or JSON Lines\n")
        return 1
    done = 0
    if not jsonl and text is not None:
        if not text.strip():
            err.write(f"{args.file}: empty report\n")
            return 1
        return 0 if _flush([(args.file if args.file != "-" else None, text)], args, out) else 1
    batch: list[tuple[Any, str]] = []
    for n, obj in _records(raw, err):
        if obj is None:
            continue
        rid = obj.get("id", n)
        body = obj.get("text")
        if not isinstance(body, str):
            err.write(f'line {n} (id {rid!r}): missing or non-string "text"\n')
            continue
        if not body.strip():
            err.write(f"line {n} (id {rid!r}): empty text\n")
            continue
        if "\x00" in body:
            err.write(f"line {n} (id {rid!r}): binary text\n")
            continue
        batch.append((rid, body))
        if len(batch) >= _BATCH:
            done += _flush(batch, args, out)
    if batch:
        done += _flush(batch, args, out)
    return 0 if done else 1


def cmd_context(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    raw = _read(args.file)
    done = 0
    for n, obj in _records(raw, err):
        if obj is None:
            continue
        rid = obj.get("id", n)
        sentence, target = obj.get("sentence"), obj.get("target")
        if not isinstance(sentence, str) or not sentence.strip() or not isinstance(target, str) or not target:
            err.write(f'line {n} (id {rid!r}): needs non-empty "sentence" and "target" strings\n')
            continue
        try:
            result = classify_context(sentence, target, language=args.language)
        except ValueError as exc:
            err.write(f"line {n} (id {rid!r}): {exc}\n")
            continue
        out.write(json.dumps({"id": rid, **result}, ensure_ascii=False) + "\n")
        done += 1
    return 0 if done else 1


def main(argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    ap = argparse.ArgumentParser(prog="python -m alignment.nlp", description="Ultrasound report parser")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="parse reports (JSON Lines {id, text} or one plain-text report)")
    p.add_argument("--lexicon", default="udaf", choices=LEXICON_SYSTEMS)
    p.add_argument("--language", default="auto", choices=("auto", "en", "zh"))
    p.add_argument("file", nargs="?", default="-")
    c = sub.add_parser("context", help="classify the context of a target phrase in a sentence")
    c.add_argument("--language", default="auto", choices=("auto", "en", "zh"))
    c.add_argument("file", nargs="?", default="-")
    args = ap.parse_args(argv)
    try:
        if args.command == "parse":
            return cmd_parse(args, out, err)
        return cmd_context(args, out, err)
    except OSError as exc:
        err.write(f"{args.file}: {exc.strerror or exc}\n")
        return 1
