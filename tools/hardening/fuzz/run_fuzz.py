"""Run the fuzz targets (fuzz_targets.py) in subprocesses and report what happened, as JSON.

    python tools/hardening/fuzz/run_fuzz.py --runs 1000000 --workers 2 --workdir /tmp/bitnet-fuzz [--targets model,...]

Each worker is a separate libFuzzer process (`-atheris_runs`, `-timeout` seconds per input: longer is a hang),
seeded with tools/hardening/fuzz/seeds.py's corpora and sharing one growing corpus folder per target. A crash (a Python
exception other than the engine's own errors, a signal in compiled code), a hang or an out-of-memory stops
that worker; libFuzzer saves the input under `<workdir>/artifacts/<target>/` and the report lists the files
and the end of the worker's output. The exit status is 0 only when every worker ran all its inputs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from seeds import write_corpora  # noqa: E402  (a sibling script, not a package)

TARGETS = {"model": "models", "tokenizer": "tokenizers", "template": "templates", "selftest": "selftest"}
DEFAULT_TARGETS = ("model", "tokenizer", "template")
DONE = re.compile(r"^Done (\d+) (?:runs )?in (\d+) second", re.M)
# libFuzzer's artifact file prefixes, by what they mean here
ARTIFACT_KINDS = {"crashes": "crash-", "hangs": "timeout-", "out_of_memory": "oom-"}


def run_target(target: str, runs: int, workers: int, workdir: Path, seeds: Path, timeout_s: int,
               rss_limit_mb: int) -> dict:
    corpus = workdir / "corpus" / target
    artifacts = workdir / "artifacts" / target
    stats_dir = workdir / "stats" / target
    for folder in (corpus, artifacts, stats_dir):
        folder.mkdir(parents=True, exist_ok=True)
    share, extra = divmod(runs, workers)
    procs = []
    start = time.monotonic()
    for w in range(workers):
        cmd = [sys.executable, str(HERE / "fuzz_targets.py"), target, f"-atheris_runs={share + (w < extra)}",
               f"-timeout={timeout_s}", f"-rss_limit_mb={rss_limit_mb}", f"-artifact_prefix={artifacts}/",
               f"-seed={w + 1}", "-print_final_stats=1", str(corpus), str(seeds / TARGETS[target])]
        dictionary = HERE / f"{target}.dict"
        if dictionary.is_file():
            cmd.insert(3, f"-dict={dictionary}")
        env = dict(os.environ, BITNET_FUZZ_STATS=str(stats_dir / f"worker{w}.json"))
        log = open(workdir / f"{target}-worker{w}.log", "wb")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    for proc, log in procs:
        proc.wait()
        log.close()
    seconds = time.monotonic() - start

    answers: dict[str, int] = {}
    inputs, failures = 0, []
    for w, (proc, _) in enumerate(procs):
        output = (workdir / f"{target}-worker{w}.log").read_text(errors="replace")
        done = DONE.search(output)
        stats_file = stats_dir / f"worker{w}.json"
        counted = json.loads(stats_file.read_text()) if stats_file.is_file() else {"inputs": 0, "answers": {}}
        for kind, n in counted["answers"].items():
            answers[kind] = answers.get(kind, 0) + n
        inputs += int(done.group(1)) if done else counted["inputs"]
        if proc.returncode != 0 or not done:
            failures.append({"worker": w, "returncode": proc.returncode, "output_tail": output[-3000:]})
    found = sorted(p.name for p in artifacts.iterdir())
    return {
        "inputs": inputs, "seconds": round(seconds, 1), "inputs_per_s": round(inputs / seconds) if seconds else 0,
        "answers": answers,
        **{kind: sum(n.startswith(prefix) for n in found) for kind, prefix in ARTIFACT_KINDS.items()},
        "artifacts": [str(artifacts / n) for n in found], "failed_workers": failures,
        "ok": not failures and not found,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="comma-separated: " + ", ".join(TARGETS))
    parser.add_argument("--runs", type=int, default=20_000, help="inputs per target, over all workers")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--workdir", type=Path, required=True, help="corpora, artifacts and logs go here")
    parser.add_argument("--timeout", type=int, default=2, help="seconds per input before it counts as a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    seeds = args.workdir / "seeds"
    write_corpora(seeds)
    report = {t: run_target(t, args.runs, args.workers, args.workdir, seeds, args.timeout, args.rss_limit_mb)
              for t in targets}
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if all(r["ok"] for r in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
