"""Alignment results are keyed by ``PIPELINE_VERSION``: output that changes without a version bump would
leave stale results looking current.  ``benchmarks/nlp_equivalence.json`` records digests of ``to_dict()``
for the version it names; while that is still the current version, the gold sets (and the shared
conclusions, where this machine has them) must give exactly those digests."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from alignment.nlp import PIPELINE_VERSION

ROOT = Path(__file__).resolve().parents[3]


def _equivalence_module():
    spec = importlib.util.spec_from_file_location("nlp_equivalence", ROOT / "benchmarks" / "nlp_equivalence.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_output_unchanged_unless_pipeline_version_bumped() -> None:
    record = json.loads((ROOT / "benchmarks" / "nlp_equivalence.json").read_text(encoding="utf-8"))
    if record["pipeline_version"] != PIPELINE_VERSION:
        pytest.skip("PIPELINE_VERSION was bumped: re-record with benchmarks/nlp_equivalence.py --write")
    current = _equivalence_module().digests(generated=False)
    changed = sorted(k for k, v in current.items() if record["digests"][k] != v)
    assert not changed, f"output changed for {changed} without a PIPELINE_VERSION bump"
