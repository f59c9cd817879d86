"""The distributions a user installs: the sdist and the repaired manylinux wheel, built by wheels/build_wheel.py
and installed into fresh venvs (about two and a half minutes on two cores: two package builds)."""
from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import HARDWARE

import bitnet

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not sys.platform.startswith("linux") or shutil.which("objdump") is None,
    reason="auditwheel and the binutils inspection are Linux-only (cibuildwheel covers the other platforms)")]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("wheels")
    result = subprocess.run([sys.executable, str(ROOT / "wheels" / "build_wheel.py"), "--out", str(out),
                             "--json", str(out / "report.json")], capture_output=True, text=True, timeout=1800)
    report = json.loads((out / "report.json").read_text())
    assert result.returncode == 0 and report["ok"], report.get("error", result.stderr[-3000:])
    return report


def test_the_wheel_is_a_manylinux_wheel_of_this_python(report):
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    machine = platform.machine()
    assert report["tags"] and all(re.fullmatch(rf"{tag}-{tag}-manylinux_2_\d+_{machine}", t) for t in report["tags"])
    assert Path(report["wheel_file"]).name.endswith(f"manylinux_{report['tags'][0].split('manylinux_')[1]}.whl")
    assert "is\nconsistent with the following platform tag" in report["auditwheel_show"]


def test_the_wheel_is_self_contained(report):
    with zipfile.ZipFile(report["wheel_file"]) as archive:
        names = set(archive.namelist())
        model = archive.read("bitnet/data/bitnet-tiny.gguf")
        header = archive.read("bitnet/capi/include/bitnet.h")
    assert model == bitnet.default_model_path().read_bytes()
    assert header == (ROOT / "include" / "bitnet.h").read_bytes()
    assert "bitnet/capi/libbitnet.so" in names
    # OpenMP comes with the wheel (auditwheel vendors it), not from the user's machine
    assert any(re.fullmatch(r"bitnet_engine\.libs/libgomp-[0-9a-f]+\.so[.\d]*", n) for n in names)
    assert not [n for n in names if n.endswith((".c", ".pyx"))]


@pytest.mark.skipif(platform.machine() != "x86_64", reason=HARDWARE + "x86-64 kernel variants need x86-64")
def test_the_wheel_carries_every_x86_variant_and_no_native_flags(report):
    # check_kernel_variants found the ternary kernels of each variant and baseline-only scalar code
    assert set(report["kernel_symbols"]) == {"scalar", "avx2", "avx512"}
    assert min(report["kernel_symbols"].values()) >= 2


@pytest.mark.parametrize("label", ["wheel", "sdist"])
def test_a_fresh_venv_runs_the_model_and_a_c_program(report, label):
    used = report[label]
    model = bitnet.load()   # the embedded model, as `bitnet run` without --model uses it
    assert used["text"].strip()
    # the installed package generates what this checkout generates
    assert used["greedy"].rstrip("\n") == model.generate("The meaning of life is", max_tokens=12,
                                                         temperature=0).text.rstrip("\n")
    assert set(used["variants_checked"]) == set(bitnet.cpu_info()["supported_variants"])
    assert "/venv-" in used["capi_flags"] and "-lbitnet" in used["capi_flags"]
    if platform.machine() == "x86_64":
        assert used["compiled_variants"] == ["scalar", "avx2", "avx512", "amx", "amx-model"]
