"""Quality of variants (profiles/quality.py): published figures, each cited, comparable only within their protocol."""

import json
import subprocess
import sys

import pytest

from bench.core.errors import ConfigError
from profiles.quality import DEFAULT_PATH, load_quality, quality_from_dict

LIGHTNING = "ByteDance/SDXL-Lightning (full UNet)"


def test_the_mlperf_window_follows_from_its_reference_and_stated_tolerance():
    """MLCommons states the closed division's bounds as 'within 2%' (FID) and 'within 0.2%' (CLIP) of the reference
    run's figure: recomputed from the reference, they equal the printed bounds to the printed precision (1e-8)."""
    q = load_quality()
    assert {w.protocol for w in q.windows} == {"mlperf-sdxl-fid", "mlperf-sdxl-clip"}
    for w in q.windows:
        assert w.low == pytest.approx(w.reference * (1 - w.tolerance), abs=1e-8)
        assert w.high == pytest.approx(w.reference * (1 + w.tolerance), abs=1e-8)
        ref = q.figure("stabilityai/stable-diffusion-xl-base-1.0", 20, 1024, w.protocol)
        assert ref is not None and ref.value == w.reference and w.admits(ref.value)
    fid = next(w for w in q.windows if w.protocol == "mlperf-sdxl-fid")
    assert (fid.low, fid.high) == (23.01085758, 23.95007626)


def test_a_few_step_variant_is_priced_in_quality_within_its_table_only():
    q = load_quality()
    light = q.figure(LIGHTNING, 4, 1024, "lightning-fid-whole")
    heavy = q.figure("SDXL (base)", 32, 1024, "lightning-fid-whole")
    assert (light.value, heavy.value) == (22.30, 18.49)  # SDXL-Lightning, Table 2: 4 steps vs SDXL's 32
    assert q.compare(heavy, light) == pytest.approx(3.81)  # FID: lower is better, so the heavy variant is better by 3.81
    assert q.compare(q.figure(LIGHTNING, 4, 1024, "lightning-clip"), q.figure(LIGHTNING, 2, 1024, "lightning-clip")) == pytest.approx(0.09)
    mlperf = q.figure("stabilityai/stable-diffusion-xl-base-1.0", 20, 1024, "mlperf-sdxl-fid")
    with pytest.raises(ConfigError, match="not comparable"):
        q.compare(light, mlperf)  # two tables, two FID protocols
    assert q.figure(LIGHTNING, 3, 1024, "lightning-fid-whole") is None  # nothing published: not offered, never interpolated
    assert q.figure(LIGHTNING, 4, 512, "lightning-fid-whole") is None


def _data():
    return json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["figures"][0].update(protocol="made-up"), "figures[0].protocol"),
    (lambda d: d["figures"][0]["citation"].update(source="nowhere"), "figures[0].citation.source"),
    (lambda d: d["figures"].append(dict(d["figures"][0])), "figures[18]"),
    (lambda d: d["windows"][0].update(reference=30.0), "reference"),
    (lambda d: d["figures"][0].update(steps=0), "steps"),
    (lambda d: d.update(schema="aigc-edge-bench/profile"), "schema"),
])
def test_a_broken_quality_file_fails_in_one_line_naming_the_field(edit, field):
    data = _data()
    edit(data)
    with pytest.raises(ConfigError) as exc:
        quality_from_dict(data, "quality.json")
    assert field in str(exc.value) and "\n" not in str(exc.value)


def test_the_report_lists_every_quality_figure_with_its_citation():
    out = subprocess.run([sys.executable, "-m", "profiles.report", "profiles/data", "--figures"], capture_output=True, text=True, check=True,
                         cwd=DEFAULT_PATH.parent.parent.parent).stdout
    q = load_quality()
    section = out.split("Quality of variants", 1)[1]
    for f in q.figures:
        assert f"| {f.model} ({f.architecture}) | {f.steps} | {f.resolution} |" in section and f.citation.locator in section
    assert section.count("acceptance window of") == len(q.windows)
