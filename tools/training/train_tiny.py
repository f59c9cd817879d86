"""Train the tiny BitNet b1.58 model that ships in ``bitnet/data`` (quantization-aware, torch CPU).

The model is the BitNet b1.58 2B4T graph (transformers ``BitNetForCausalLM``, model_type ``bitnet``) at toy
size, trained on the Debian ``fortunes`` corpus (see ``tools/training/corpus.py``) exactly the way BitNet b1.58 is
trained: every linear layer of the blocks ternarizes its fp32 master weight per tensor by absmean and quantizes
its input per token by absmax to int8 in the forward pass, with straight-through gradients.

It writes a Hugging Face style checkpoint (config.json, model.safetensors with fp32 master weights,
tokenizer.json, tokenizer_config.json) plus ``eval.json`` (held-out perplexity of the ternary model computed
the way llama.cpp's perplexity tool does it, and samples) to ``--out`` (default ``tools/out/tiny-hf``).

Reproduce the shipped model with::

    python tools/training/train_tiny.py    # 600 steps, ~30 min on one idle CPU core; progress is logged to stderr
    python tools/training/train_tiny.py --reevaluate    # recompute eval.json (perplexity, samples) of tools/out/tiny-hf
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # tools/ is not a package: imported from its own directory

log = logging.getLogger("train_tiny")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ModelConfig:
    vocab_size: int = 4096
    hidden_size: int = 256
    intermediate_size: int = 768
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    initializer_range: float = 0.02


@dataclass
class TrainConfig:
    steps: int = 600
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.05
    adam_betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 1234
    eval_ctx: int = 256
    # One thread: the training machine's 2 cores are shared and oversubscribed, and with two threads every
    # OpenMP barrier then waits for a descheduled partner (measured: ~4x more CPU time per step).
    threads: int = 1
    log_every: int = 10


# --- BitNet b1.58 quantizers (forward exact, backward straight-through) ---------------------------------------

def ternarize(w: torch.Tensor) -> torch.Tensor:
    """Absmean ternarization per tensor: W_q = clamp(round(W·s), -1, 1) / s with s = 1 / max(mean|W|, 1e-5)."""
    s = 1.0 / w.abs().mean().clamp(min=1e-5)
    return (w * s).round().clamp(-1, 1) / s


def quantize_activations(x: torch.Tensor) -> torch.Tensor:
    """Absmax int8 quantization per token: round(x·s) clamped to [-128, 127], then / s, s = 127 / max|x|."""
    s = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return (x * s).round().clamp(-128, 127) / s


class BitLinear(nn.Linear):
    """nn.Linear without bias whose forward is W1.58A8; gradients pass straight through both quantizers."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w_q = w + (ternarize(w) - w).detach()
        x_q = x + (quantize_activations(x) - x).detach()
        return F.linear(x_q, w_q)


# --- The 2B4T graph ------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_tables(cfg: ModelConfig, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
    freqs = torch.outer(torch.arange(n, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """NEOX / rotate_half RoPE: element i pairs with i + head_dim/2."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.q_proj = BitLinear(cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim)
        self.k_proj = BitLinear(cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim)
        self.v_proj = BitLinear(cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim)
        self.o_proj = BitLinear(cfg.num_attention_heads * cfg.head_dim, cfg.hidden_size)
        self.attn_sub_norm = RMSNorm(cfg.num_attention_heads * cfg.head_dim, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        c = self.cfg
        q = self.q_proj(x).view(b, t, c.num_attention_heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.num_key_value_heads, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = c.num_attention_heads // c.num_key_value_heads
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        o = o.transpose(1, 2).reshape(b, t, c.num_attention_heads * c.head_dim)
        return self.o_proj(self.attn_sub_norm(o))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = BitLinear(cfg.hidden_size, cfg.intermediate_size)
        self.up_proj = BitLinear(cfg.hidden_size, cfg.intermediate_size)
        self.down_proj = BitLinear(cfg.intermediate_size, cfg.hidden_size)
        self.ffn_sub_norm = RMSNorm(cfg.intermediate_size, cfg.rms_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.ffn_sub_norm(F.relu(self.gate_proj(x)).square() * self.up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class TinyBitNet(nn.Module):
    """Parameter names match transformers' BitNetForCausalLM (``model.…``; the LM head is the tied embedding)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        cos, sin = rope_tables(cfg, cfg.max_position_embeddings)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=self.cfg.initializer_range)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.cfg.max_position_embeddings:
            raise ValueError(f"sequence of {t} tokens exceeds the context of {self.cfg.max_position_embeddings}")
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return F.linear(self.model.norm(x), self.model.embed_tokens.weight)


def count_parameters(model: nn.Module) -> dict[str, int]:
    ternary = sum(m.weight.numel() for m in model.modules() if isinstance(m, BitLinear))
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "ternary": ternary, "float": total - ternary}


# --- Data ------------------------------------------------------------------------------------------------------

def encode_stream(tok, text: str) -> torch.Tensor:
    """Token ids of ``text`` without special tokens (the caller decides where BOS goes)."""
    return torch.tensor(tok.encode(text, add_special_tokens=False).ids, dtype=torch.long)


def sample_batch(stream: torch.Tensor, batch_size: int, seq_len: int, bos_id: int,
                 gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``seq_len + 1`` tokens whose first token is replaced by BOS, as llama.cpp's perplexity
    tool does for every chunk it scores; inputs are the first ``seq_len`` tokens, targets the last."""
    starts = torch.randint(0, stream.numel() - seq_len - 1, (batch_size,), generator=gen)
    windows = torch.stack([stream[s: s + seq_len + 1] for s in starts.tolist()])
    windows[:, 0] = bos_id
    return windows[:, :-1], windows[:, 1:]


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr_ratio · lr``."""
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# --- Evaluation ------------------------------------------------------------------------------------------------

@torch.no_grad()
def llama_cpp_perplexity(model: TinyBitNet, tok, text: str, n_ctx: int, batch_chunks: int = 8) -> dict:
    """Perplexity exactly as llama.cpp's ``perplexity`` tool computes it.

    The whole text is tokenized with BOS prepended (add_bos_token = true), cut into ``len // n_ctx``
    non-overlapping chunks, each evaluated from an empty context with its first token replaced by BOS; only the
    second half of every chunk is scored (logits at positions ``n_ctx/2 .. n_ctx-2`` predicting the next
    token). Reports exp(mean NLL) and llama.cpp's "±" (standard error of the mean NLL, times the perplexity).
    """
    bos_id = tok.token_to_id(corpus.BOS_TOKEN)
    tokens = torch.cat([torch.tensor([bos_id]), encode_stream(tok, text)])
    if tokens.numel() < 2 * n_ctx:
        raise ValueError(f"need at least {2 * n_ctx} tokens for n_ctx={n_ctx}, the text has {tokens.numel()}")
    n_chunk = tokens.numel() // n_ctx
    chunks = tokens[: n_chunk * n_ctx].view(n_chunk, n_ctx)
    first = n_ctx // 2
    nll_sum = nll2_sum = 0.0
    count = 0
    model.eval()
    for i in range(0, n_chunk, batch_chunks):
        targets = chunks[i: i + batch_chunks]
        inputs = targets.clone()
        inputs[:, 0] = bos_id
        logits = model(inputs)[:, first: n_ctx - 1].double()
        nll = -torch.log_softmax(logits, dim=-1).gather(-1, targets[:, first + 1:, None]).squeeze(-1)
        nll_sum += nll.sum().item()
        nll2_sum += nll.square().sum().item()
        count += nll.numel()
    mean = nll_sum / count
    ppl = math.exp(mean)
    var = nll2_sum / count - mean * mean
    err = math.sqrt(var / (count - 1)) * ppl if var > 0 else float("nan")
    return {"ppl": ppl, "ppl_err": err, "mean_nll": mean, "n_ctx": n_ctx, "chunks": n_chunk,
            "scored_tokens": count, "text_tokens_with_bos": int(tokens.numel())}


@torch.no_grad()
def generate(model: TinyBitNet, tok, prompt: str, max_new_tokens: int, temperature: float,
             top_k: int, seed: int) -> str:
    """Greedy (temperature 0) or top-k sampling from the ternary model; BOS first, as the engine does."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt).ids  # the post-processor adds BOS
    for _ in range(max_new_tokens):
        if len(ids) >= model.cfg.max_position_embeddings:
            break
        logits = model(torch.tensor([ids]))[0, -1]
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            vals, idx = torch.topk(logits / temperature, top_k)
            nxt = int(idx[torch.multinomial(torch.softmax(vals, -1), 1, generator=gen)])
        if nxt == tok.token_to_id(corpus.EOS_TOKEN):
            break
        ids.append(nxt)
    return tok.decode(ids, skip_special_tokens=True)


# --- Checkpoint ------------------------------------------------------------------------------------------------

def hf_config(cfg: ModelConfig, tok) -> dict:
    return {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "hidden_act": "relu2",
        "tie_word_embeddings": True,
        "bos_token_id": tok.token_to_id(corpus.BOS_TOKEN),
        "eos_token_id": tok.token_to_id(corpus.EOS_TOKEN),
        "torch_dtype": "float32",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": cfg.initializer_range,
        "quantization_config": {
            "quant_method": "bitnet",
            "linear_class": "autobitlinear",
            "quantization_mode": "online",
        },
    }


def save_checkpoint(model: TinyBitNet, tok, out_dir: Path) -> None:
    """config.json + model.safetensors (fp32 master weights, transformers' names, no lm_head: it is tied)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to(torch.float32).contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_config(model.cfg, tok), indent=2) + "\n", encoding="utf-8")
    corpus.save_tokenizer(tok, out_dir, model_max_length=model.cfg.max_position_embeddings)


def load_checkpoint(out_dir: Path) -> tuple[TinyBitNet, object]:
    """Rebuild the QAT model and tokenizer from a directory written by ``save_checkpoint``."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    hf = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    cfg = ModelConfig(**{k: hf[k] for k in asdict(ModelConfig()) if k in hf})
    model = TinyBitNet(cfg)
    model.load_state_dict(load_file(str(out_dir / "model.safetensors")), strict=True)
    model.eval()
    return model, Tokenizer.from_file(str(out_dir / "tokenizer.json"))


# --- Training --------------------------------------------------------------------------------------------------

# No trailing spaces: the split regex makes a trailing space its own token, one the model rarely saw mid-text.
SAMPLE_PROMPTS = ("The", "A man", "Love is")


def draw_samples(model: TinyBitNet, tok, seed: int, n_samples: int = 3, max_new_tokens: int = 60) -> list[dict]:
    """The first sample is greedy, the others top-k 40 at temperature 0.8 with seeds ``seed + i``."""
    samples = []
    for i, prompt in enumerate(SAMPLE_PROMPTS[:n_samples]):
        temperature = 0.0 if i == 0 else 0.8
        text = generate(model, tok, prompt, max_new_tokens, temperature, top_k=40, seed=seed + i)
        samples.append({"prompt": prompt, "temperature": temperature, "top_k": 40 if temperature else None,
                        "seed": seed + i, "max_new_tokens": max_new_tokens, "text": text})
        log.info("sample %d (%s): %r", i, "greedy" if temperature == 0 else f"T={temperature}", text)
    return samples


def reevaluate(out_dir: Path, heldout_path: Path) -> dict:
    """Recompute the held-out perplexity and the samples of a saved checkpoint and update its eval.json."""
    model, tok = load_checkpoint(out_dir)
    eval_path = out_dir / "eval.json"
    result = json.loads(eval_path.read_text(encoding="utf-8"))
    torch.set_num_threads(result["train_config"]["threads"])
    ppl = llama_cpp_perplexity(model, tok, heldout_path.read_text(encoding="utf-8"),
                               result["heldout_perplexity"]["n_ctx"])
    log.info("held-out perplexity: %.4f +/- %.4f", ppl["ppl"], ppl["ppl_err"])
    result["heldout_perplexity"] = ppl
    result["samples"] = draw_samples(model, tok, result["train_config"]["seed"], len(result["samples"]),
                                     result["samples"][0]["max_new_tokens"])
    eval_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def train(mc: ModelConfig, tc: TrainConfig, out_dir: Path, documents: Sequence[corpus.Document] | None = None,
          heldout_text: str | None = None, n_samples: int = 3, sample_tokens: int = 60) -> dict:
    """Train, evaluate and save; returns the contents of ``eval.json``."""
    t_start = time.time()
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    torch.use_deterministic_algorithms(True)

    if documents is None:
        documents = corpus.read_documents()
    train_docs, heldout_docs = corpus.split_train_heldout(documents)
    if heldout_text is None:
        heldout_text = corpus.join_documents(heldout_docs)
    tok = corpus.train_tokenizer(train_docs, mc.vocab_size)
    bos_id = tok.token_to_id(corpus.BOS_TOKEN)
    stream = encode_stream(tok, corpus.join_documents(train_docs))
    log.info("corpus: %d train docs, %d train tokens; held-out %d chars", len(train_docs), stream.numel(),
             len(heldout_text))

    model = TinyBitNet(mc)
    params = count_parameters(model)
    log.info("model: %s", params)
    decay = [m.weight for m in model.modules() if isinstance(m, BitLinear)]
    decay_ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in decay_ids]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc.lr, betas=tc.adam_betas, eps=1e-8,
    )
    gen = torch.Generator().manual_seed(tc.seed)
    history = []
    ema_loss = None
    t_train = time.time()
    for step in range(tc.steps):
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        inputs, targets = sample_batch(stream, tc.batch_size, tc.seq_len, bos_id, gen)
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, mc.vocab_size), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        value = loss.item()
        ema_loss = value if ema_loss is None else 0.95 * ema_loss + 0.05 * value
        if (step + 1) % tc.log_every == 0 or step == 0 or step + 1 == tc.steps:
            elapsed = time.time() - t_train
            eta = elapsed / (step + 1) * (tc.steps - step - 1)
            log.info("step %5d/%d  loss %.4f  ema %.4f  lr %.2e  %.2f s/step  eta %.1f min", step + 1,
                     tc.steps, value, ema_loss, lr_at(step, tc), elapsed / (step + 1), eta / 60)
            history.append({"step": step + 1, "loss": round(value, 4), "ema_loss": round(ema_loss, 4)})
    train_seconds = time.time() - t_train

    ppl = llama_cpp_perplexity(model, tok, heldout_text, tc.eval_ctx)
    log.info("held-out perplexity (ternary, llama.cpp method, n_ctx %d, %d chunks): %.4f +/- %.4f",
             ppl["n_ctx"], ppl["chunks"], ppl["ppl"], ppl["ppl_err"])
    samples = draw_samples(model, tok, tc.seed, n_samples, sample_tokens)
    save_checkpoint(model, tok, out_dir)
    result = {
        "heldout_perplexity": ppl,
        "steps": tc.steps,
        "tokens_seen": tc.steps * tc.batch_size * tc.seq_len,
        "train_tokens": int(stream.numel()),
        "final_train_loss": round(value, 4),
        "final_train_loss_ema": round(ema_loss, 4),
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - t_start, 1),
        "torch": torch.__version__,
        "parameters": params,
        "model_config": asdict(mc),
        "train_config": asdict(tc),
        "samples": samples,
        "loss_history": history,
    }
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> None:
    mc, tc = ModelConfig(), TrainConfig()
    parser = argparse.ArgumentParser(description="Train the tiny BitNet b1.58 model (QAT, CPU).")
    parser.add_argument("--out", type=Path, default=ROOT / "tools" / "out" / "tiny-hf")
    parser.add_argument("--steps", type=int, default=tc.steps)
    parser.add_argument("--layers", type=int, default=mc.num_hidden_layers)
    parser.add_argument("--batch-size", type=int, default=tc.batch_size)
    parser.add_argument("--lr", type=float, default=tc.lr)
    parser.add_argument("--seed", type=int, default=tc.seed)
    parser.add_argument("--threads", type=int, default=tc.threads)
    parser.add_argument("--reevaluate", action="store_true",
                        help="only recompute perplexity and samples of the checkpoint in --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.reevaluate:
        reevaluate(args.out, ROOT / "bitnet" / "data" / "heldout.txt")
        return
    mc.num_hidden_layers = args.layers
    tc.steps, tc.batch_size, tc.lr, tc.seed, tc.threads = args.steps, args.batch_size, args.lr, args.seed, args.threads
    tc.warmup_steps = min(tc.warmup_steps, max(1, tc.steps // 10))
    result = train(mc, tc, args.out)
    print(json.dumps({k: result[k] for k in ("heldout_perplexity", "final_train_loss", "train_seconds")}, indent=1))


if __name__ == "__main__":
    main()
