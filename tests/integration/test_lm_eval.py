"""lm-eval (the evaluation harness) scores and generates through `bitnet serve` with its `local-completions`
client, as people evaluate served models: a loglikelihood task and a generate_until task whose documents live in
this test, the tokenizer being the tokenizer.json the engine exports. Each document's log-likelihood must equal
the Python API's scoring call (Model.score), and each generation the Python API's greedy answer."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import bitnet

pytest.importorskip("lm_eval", reason="pip install 'lm-eval[api]' (not installable on this Python version)")
pytest.importorskip("fastapi")

from server_process import CTX, ServerProcess  # noqa: E402  (after the importorskips above)

DOCS = [
    {"context": "Love is", "continuation": " a many splendoured thing"},
    {"context": "The meaning of life", "continuation": " is forty-two"},
    {"context": "A journey of a thousand miles", "continuation": " begins with a single step"},
    {"context": "Never", "continuation": " give up"},
]
TASKS = {
    "bitnet_ll": "output_type: loglikelihood\n",
    "bitnet_gen": ("output_type: generate_until\ngeneration_kwargs:\n  until: [\"\\n\"]\n  max_gen_toks: 12\n"
                   "  temperature: 0\n"),
}
RUN = """
import json, sys
import lm_eval
from lm_eval.tasks import TaskManager
folder, url = sys.argv[1], sys.argv[2]
result = lm_eval.simple_evaluate(
    model="local-completions", tasks=["bitnet_ll", "bitnet_gen"], task_manager=TaskManager(include_path=folder),
    model_args=f"model=bitnet,base_url={url}/v1/completions,tokenizer_backend=huggingface,tokenizer={folder}/tok,"
               "num_concurrent=1,max_retries=1,tokenized_requests=True", log_samples=True)
print(json.dumps({task: [[s["doc"], s["filtered_resps"][0]] for s in result["samples"][task]]
                  for task in ("bitnet_ll", "bitnet_gen")}))
"""


@pytest.fixture(scope="module")
def served(small_model_path, tmp_path_factory):
    proc = ServerProcess(small_model_path, tmp_path_factory.mktemp("lm-eval") / "server.log")
    yield proc
    proc.stop()


def _task_folder(folder, model) -> None:
    """The tasks (documents in a local JSON lines file) and the tokenizer lm-eval reads (the engine's own)."""
    with open(folder / "docs.jsonl", "w") as f:
        f.writelines(json.dumps(doc) + "\n" for doc in DOCS)
    for name, body in TASKS.items():
        (folder / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder / 'docs.jsonl'}\n"
            "test_split: test\ndoc_to_text: \"{{context}}\"\ndoc_to_target: \"{{continuation}}\"\n" + body
            + "metric_list:\n  - metric: " + ("perplexity\n    aggregation: perplexity\n    higher_is_better: false\n"
                                              if "loglikelihood" in body else "exact_match\n"))
    (folder / "tok").mkdir()
    tok = model.tokenizer
    (folder / "tok" / "tokenizer.json").write_text(tok.hf.to_str())
    (folder / "tok" / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tok.token_text(tok.bos_id),
        "eos_token": tok.token_text(tok.eos_id)}))


def test_lm_eval_scores_and_generates_through_the_server_as_the_python_api_does(served, small_model_path, tmp_path):
    model = bitnet.load(small_model_path, n_threads=1, n_ctx=CTX)
    _task_folder(tmp_path, model)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="0")
    proc = subprocess.run([sys.executable, "-c", RUN, str(tmp_path), served.url], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stderr[-2000:])                      # what lm-eval printed (shown with pytest -s)
    samples = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(samples["bitnet_ll"]) == len(samples["bitnet_gen"]) == len(DOCS)
    for doc, (loglikelihood, is_greedy) in samples["bitnet_ll"]:
        # lm-eval's tokenizer adds no BOS: the same ids through the Python API's scoring call
        score = model.score(model.tokenize(doc["continuation"], add_bos=False),
                            context=model.tokenize(doc["context"], add_bos=False))
        assert loglikelihood == pytest.approx(score.logprob, abs=1e-4) and is_greedy == score.is_greedy, doc
    for doc, generated in samples["bitnet_gen"]:
        want = model.generate(model.tokenize(doc["context"], add_bos=False), max_tokens=12, temperature=0,
                              stop=["\n"])
        assert generated == want.text, doc
