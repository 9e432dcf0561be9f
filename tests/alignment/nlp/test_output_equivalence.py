"""Alignment results are keyed by ``PIPELINE_VERSION``: output that changes without a version bump would
leave stale results looking current, and a bump without a new reference would leave nobody looking at what
changed.  ``benchmarks/nlp_equivalence.json`` records digests of ``to_dict()`` for the version it names
(per report for the gold sets and the shared conclusions); the current output must give exactly those
digests, under exactly that version.  A deliberate change is re-recorded with
``benchmarks/nlp_equivalence.py --write`` after reading the reports this test names."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from alignment.nlp import PIPELINE_VERSION

ROOT = Path(__file__).resolve().parents[3]


def _equivalence_module():
    spec = importlib.util.spec_from_file_location("nlp_equivalence", ROOT / "benchmarks" / "nlp_equivalence.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _diff(record: dict, found: dict, module) -> list[str]:
    """The sets whose output differs from the record, each with the first reports that changed."""
    lines = []
    current = module.digests(found=found)
    for key in sorted(current):
        if key not in record["digests"] or record["digests"][key] == current[key]:
            continue
        texts, outputs = found[key]
        old = record.get("reports", {}).get(key, "").split()
        new = module.report_digests(outputs).split()
        changed = [i for i, digest in enumerate(new) if i >= len(old) or old[i] != digest]
        lines.append(f"{key}: {len(changed)} of {len(texts)} reports changed")
        lines.extend(f"    {texts[i][:100]!r}\n      now {outputs[i][:300]}" for i in changed[:3])
    return lines


def test_output_and_pipeline_version_match_the_recorded_reference() -> None:
    record = json.loads((ROOT / "benchmarks" / "nlp_equivalence.json").read_text(encoding="utf-8"))
    module = _equivalence_module()
    found = module.outputs(generated=False)
    diff = _diff(record, found, module)
    if record["pipeline_version"] != PIPELINE_VERSION:
        raise AssertionError(
            f"PIPELINE_VERSION is {PIPELINE_VERSION} but the reference was recorded for {record['pipeline_version']}:"
            " read what changed, then re-record with benchmarks/nlp_equivalence.py --write\n"
            + ("\n".join(diff) or "(no output changed in the quick sets)")
        )
    assert not diff, "output changed without a PIPELINE_VERSION bump:\n" + "\n".join(diff)
