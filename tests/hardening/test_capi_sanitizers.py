"""The C ABI under AddressSanitizer + UndefinedBehaviorSanitizer (tools/hardening/sanitize_capi.py): libbitnet and the C
test programs built with -fsanitize=address,undefined, run on one and on separate models from 4 threads, and
through every misuse the header says is detected; no program may fail and no sanitizer may report. A planted
use-after-free, built the same way, must be caught (the sanitizer is really on)."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import pytest
from conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow

SCRIPT = PROJECT_ROOT / "tools" / "hardening" / "sanitize_capi.py"


def _sanitizers_work(tmp_path) -> bool:
    source = tmp_path / "probe.c"
    source.write_text("int main(void) { return 0; }\n")
    result = subprocess.run(["cc", "-fsanitize=address,undefined", str(source), "-o", str(tmp_path / "probe")],
                            capture_output=True, check=False)
    return result.returncode == 0


def test_c_programs_run_clean_under_asan_and_ubsan(tmp_path, small_model_path):
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc)")
    if not _sanitizers_work(tmp_path):
        pytest.skip("the C compiler cannot build with -fsanitize=address,undefined (libasan/libubsan missing)")
    spec = importlib.util.spec_from_file_location("sanitize_capi", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report_path = tmp_path / "report.json"
    try:
        code = module.main(["--workdir", str(tmp_path / "work"), "--model", str(small_model_path),
                            "--generations", "20", "--json", str(report_path)])
    except module.Unsupported as exc:   # no shared libpython to link against
        pytest.skip(str(exc))
    report = json.loads(report_path.read_text())
    failed = [p for p in report["programs"] if not p["ok"]]
    assert code == 0 and not failed, json.dumps(failed, indent=1)
    names = {p["program"] for p in report["programs"]}
    assert {"api_probe", "threads_own", "threads_shared", "smoke", "example_generate"} <= names
    assert all(not p.get("sanitizer_reports") for p in report["programs"] if "canary" not in p["program"])
    assert any(p.get("caught") for p in report["programs"])
