"""The embedded draft/target pair: small Llama models that behave like a real pair on vLLM's CPU build.

Recipe (deterministic, seeded; `python -m specwise.engine.pair build` re-runs it):

1. Text domain: Python source (see `corpus`), plus echo documents so the model
   learns to copy its input. Byte-level BPE tokenizer, shared by both models.
2. A small target (4 layers, hidden 256) trained with cross-entropy.
3. The draft (1 layer) starts as an early-exit copy of the small target
   (embedding, first layer, final norm) and is distilled on the target's logits
   over the target's own continuations (greedy and sampled) and corpus text:
   where speculative decoding asks the draft to agree with its target.
4. At first use, the small target is grown into an ~80 M-parameter float32
   Llama WITHOUT changing its function, so that serving it costs what an 80 M
   model costs (memory-bound at low batch, like a target on a GPU):
   - width: the hidden size is zero-padded; the residual stream's new
     coordinates stay exactly 0, so RMSNorm, which now averages over 768
     instead of 256 coordinates, gets weight × sqrt(256/768) and
     eps × 256/768 (exact). New heads and MLP units get random input weights
     (really computed) and zero output weights;
   - depth: inserted layers have zero output projections — computed in full,
     adding nothing to the residual stream.
   The grown model's logits are checked against the small model's.

Steps 1–3 take about 6 minutes on 2 quiet cores (far longer on a busy machine),
so their output (≈ 26 MB) ships in
``specwise/data/pair/``; step 4 runs in seconds at first use and is cached
under the user cache directory, keyed by a hash of the shipped weights and of
this growth recipe.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specwise.engine import INSTALL_HINT, corpus
from specwise.errors import SpecwiseError

SEED = 1234
VOCAB = 4096
SEQ = 128
EPS = 1e-5
HEAD_DIM = 64  # vLLM's CPU attention rejects head_dim 16
SPECIALS = ["<|endoftext|>", "<|pad|>"]
SMALL = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
             intermediate_size=768)
DRAFT = dict(hidden_size=256, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4,
             intermediate_size=768)
BIG = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=12,
           intermediate_size=1792)
SHIPPED = Path(__file__).resolve().parent.parent / "data" / "pair"
GROW_MAX_LOGIT_DIFF = 1e-3


@dataclass(frozen=True)
class Pair:
    target: Path
    draft: Path


def cache_dir() -> Path:
    explicit = os.environ.get("SPECWISE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "specwise"


def recipe_key(shipped: Path = SHIPPED) -> str:
    digest = hashlib.sha256()
    for path in sorted(shipped.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(shipped).as_posix().encode())
            digest.update(path.read_bytes())
    digest.update(json.dumps([SMALL, BIG, EPS]).encode())
    digest.update(inspect.getsource(grow).encode())
    return digest.hexdigest()[:16]


def require_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise SpecwiseError("engine", f"the embedded engine is not installed ({exc.name} is missing)",
                            INSTALL_HINT) from None
    return torch


def pair_paths() -> Pair:
    """Where the grown pair lives (or will, once `ensure_pair` has run)."""
    root = cache_dir() / f"pair-{recipe_key()}"
    return Pair(root / "target", root / "draft")


def ensure_pair(log: Any = print) -> Pair:
    """The grown pair's directories, building them on first use."""
    pair = pair_paths()
    root = pair.target.parent
    if (root / "build.json").exists():
        return pair
    torch = require_torch()
    from transformers import LlamaForCausalLM

    start = time.monotonic()
    log(f"building the embedded pair in {root} (first use)")
    staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    small = LlamaForCausalLM.from_pretrained(SHIPPED / "target-small", dtype=torch.float32).eval()
    big = grow(small, torch.Generator().manual_seed(SEED)).eval()
    check = torch.randint(0, small.config.vocab_size, (2, 64), generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        diff = (big(input_ids=check).logits - small(input_ids=check).logits).abs().max().item()
    if diff > GROW_MAX_LOGIT_DIFF:
        raise RuntimeError(f"the grown target departs from the small one (max |logit diff| {diff:.2e})")
    big.save_pretrained(staging / "target", safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (SHIPPED / "target-small" / name).exists():
            shutil.copy2(SHIPPED / "target-small" / name, staging / "target" / name)
    shutil.copytree(SHIPPED / "draft", staging / "draft")
    info = {"recipe_key": root.name.removeprefix("pair-"), "grow_max_logit_diff": diff,
            "params": {"target": n_params(big), "target_small": n_params(small)},
            "grow_s": round(time.monotonic() - start, 1)}
    (staging / "build.json").write_text(json.dumps(info, indent=2))
    try:
        os.replace(staging, root)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    log(f"embedded pair ready in {info['grow_s']} s ({info['params']['target']:,}-parameter target)")
    return pair


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def llama(cfg: dict[str, int], vocab: int, eos: int, pad: int, eps: float = EPS) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab, max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=eos, eos_token_id=eos, pad_token_id=pad, rope_theta=10000.0,
                         rms_norm_eps=eps, head_dim=HEAD_DIM, attention_bias=False, mlp_bias=False,
                         torch_dtype="float32", **cfg)
    return LlamaForCausalLM(config)


def grow(small: Any, gen: Any) -> Any:
    """Function-preserving growth of `small` into the BIG shape (see the module docstring)."""
    import torch

    h0, h1 = SMALL["hidden_size"], BIG["hidden_size"]
    i0, heads0 = SMALL["intermediate_size"], SMALL["num_attention_heads"]
    l0, l1 = SMALL["num_hidden_layers"], BIG["num_hidden_layers"]
    scale = math.sqrt(h0 / h1)
    cfg = small.config
    big = llama(BIG, cfg.vocab_size, cfg.eos_token_id, cfg.pad_token_id, eps=cfg.rms_norm_eps * h0 / h1)
    sd = small.state_dict()
    with torch.no_grad():
        for _, p in big.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            else:
                p.fill_(1.0)
        emb = big.model.embed_tokens.weight
        emb[:, h0:] = 0.0
        emb[:, :h0] = sd["model.embed_tokens.weight"]
        big.model.norm.weight[:h0] = sd["model.norm.weight"] * scale
        big.model.norm.weight[h0:] = scale
        # The small layers go to evenly spread positions; the others are identity layers.
        keep = {round(i * (l1 - 1) / (l0 - 1)): i for i in range(l0)}
        for j, layer in enumerate(big.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            attn.o_proj.weight.zero_()
            mlp.down_proj.weight.zero_()
            if j not in keep:
                continue
            pre = f"model.layers.{keep[j]}."
            layer.input_layernorm.weight[:h0] = sd[pre + "input_layernorm.weight"] * scale
            layer.post_attention_layernorm.weight[:h0] = sd[pre + "post_attention_layernorm.weight"] * scale
            for proj in ("q_proj", "k_proj", "v_proj"):
                getattr(attn, proj).weight[:heads0 * HEAD_DIM, :h0] = sd[pre + f"self_attn.{proj}.weight"]
            attn.o_proj.weight[:h0, :heads0 * HEAD_DIM] = sd[pre + "self_attn.o_proj.weight"]
            mlp.gate_proj.weight[:i0, :h0] = sd[pre + "mlp.gate_proj.weight"]
            mlp.up_proj.weight[:i0, :h0] = sd[pre + "mlp.up_proj.weight"]
            mlp.down_proj.weight[:h0, :i0] = sd[pre + "mlp.down_proj.weight"]
    return big


# --- training (steps 1–3): run by maintainers, output shipped in data/pair/ -------------------------------

def _log(start: float, msg: str) -> None:
    print(f"[{time.monotonic() - start:7.1f}s] {msg}", flush=True)


def cosine_lr(step: int, total: int, peak: float, warm: int) -> float:
    if step < warm:
        return peak * (step + 1) / warm
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm))))


def windows(stream: Any, n: int, length: int, gen: Any) -> Any:
    import torch

    starts = torch.randint(0, len(stream) - length - 1, (n,), generator=gen)
    return torch.stack([stream[s:s + length] for s in starts.tolist()])


def fit(model: Any, batches: Any, steps: int, peak_lr: float, loss_of: Any, label: str, start: float) -> float:
    """AdamW with warm-up and cosine decay; `loss_of(model, batch)` gives the loss."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.0, betas=(0.9, 0.95))
    model.train()
    loss = torch.tensor(0.0)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, steps, peak_lr, max(1, steps // 20))
        loss = loss_of(model, batches(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 20 == 0 or step == steps - 1:
            _log(start, f"{label} step {step + 1}/{steps} loss {loss.item():.3f}")
    model.eval()
    return float(loss.item())


def continuations(model: Any, prompts: Any, new: int, temperature: float, gen: Any) -> Any:
    """The model's own continuations of `prompts` (KV-cached, batched)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        out = model(input_ids=prompts, use_cache=True)
        past, seqs, logits = out.past_key_values, prompts, out.logits[:, -1]
        for _ in range(new):
            if temperature == 0.0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                nxt = torch.multinomial(F.softmax(logits / temperature, -1), 1, generator=gen)
            seqs = torch.cat([seqs, nxt], 1)
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1]
    return seqs


def offline_acceptance(target: Any, draft: Any, seqs: Any, skip: int) -> dict[str, float]:
    """P(target accepts the greedy draft's token) at each temperature, over the positions of `seqs`."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        t = target(input_ids=seqs).logits[:, skip - 1:-1]
        guess = draft(input_ids=seqs).logits[:, skip - 1:-1].argmax(-1, keepdim=True)
    result = {"T=0": (t.argmax(-1, keepdim=True) == guess).float().mean().item()}
    for temp in (0.25, 0.5, 0.75, 1.0):
        result[f"T={temp}"] = F.softmax(t / temp, -1).gather(-1, guess).mean().item()
    return {k: round(v, 3) for k, v in result.items()}


def train_pair(out: Path, target_steps: int, distill_steps: int, batch: int, own: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    start = time.monotonic()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(SEED)
    docs = corpus.training_documents(random.Random(SEED))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    eos, pad = tok.token_to_id(SPECIALS[0]), tok.token_to_id(SPECIALS[1])
    stream = torch.tensor([i for enc in tok.encode_batch(docs) for i in [*enc.ids, eos]], dtype=torch.long)
    _log(start, f"{len(docs)} documents, {len(stream):,} tokens")

    target = llama(SMALL, tok.get_vocab_size(), eos, pad)
    target_loss = fit(target, lambda _: windows(stream, batch, SEQ, gen), target_steps, 3e-3,
                      lambda m, x: m(input_ids=x, labels=x).loss, "target", start)

    prompts = windows(stream, own, 32, gen)
    mine = torch.cat([continuations(target, prompts[: own // 2], SEQ - 32, 0.0, gen),
                      continuations(target, prompts[own // 2: 3 * own // 4], SEQ - 32, 0.5, gen),
                      continuations(target, prompts[3 * own // 4:], SEQ - 32, 1.0, gen)])
    draft = llama(DRAFT, tok.get_vocab_size(), eos, pad)
    draft.load_state_dict({k: v.clone() for k, v in target.state_dict().items() if k in draft.state_dict()})

    def distill_batch(step: int) -> Any:
        # A quarter corpus text, the rest the target's own continuations.
        if step % 4 == 3:
            return windows(stream, batch, SEQ, gen)
        return mine[torch.randint(0, len(mine), (batch,), generator=gen)]

    def kl(model: Any, x: Any) -> Any:
        with torch.no_grad():
            teacher = F.log_softmax(target(input_ids=x).logits, -1)
        student = F.log_softmax(model(input_ids=x).logits, -1)
        return (teacher.exp() * (teacher - student)).sum(-1).mean()

    distill_kl = fit(draft, distill_batch, distill_steps, 2e-3, kl, "distill", start)

    held = torch.Generator().manual_seed(SEED + 1)
    eval_prompts = windows(stream, 32, 32, held)
    estimate = {"target_greedy": offline_acceptance(target, draft, continuations(target, eval_prompts, 64, 0.0, held), 32),
                "target_sampled_T1": offline_acceptance(target, draft,
                                                        continuations(target, eval_prompts, 64, 1.0, held), 32)}
    _log(start, f"offline acceptance estimate {json.dumps(estimate)}")

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIALS[0], bos_token=SPECIALS[0],
                                   pad_token=SPECIALS[1], model_max_length=1024)
    for name, model in (("target-small", target), ("draft", draft)):
        model.save_pretrained(out / name, safe_serialization=True)
        fast.save_pretrained(out / name)
    info = {"seed": SEED, "python": sys.version.split()[0], "torch": torch.__version__,
            "steps": {"target": target_steps, "distill": distill_steps, "batch": batch, "own": own},
            "corpus_tokens": len(stream), "params": {"target_small": n_params(target), "draft": n_params(draft)},
            "target_final_loss": target_loss, "distill_final_kl": distill_kl,
            "offline_acceptance_estimate": estimate, "train_s": round(time.monotonic() - start)}
    (out / "recipe.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description="Re-run the embedded pair's training (steps 1-3).")
    parser.add_argument("command", choices=["build", "grow"])
    parser.add_argument("--out", type=Path, default=SHIPPED)
    parser.add_argument("--target-steps", type=int, default=300)
    parser.add_argument("--distill-steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--own", type=int, default=192, help="target continuations to distill on")
    args = parser.parse_args()
    if args.command == "build":
        train_pair(args.out, args.target_steps, args.distill_steps, args.batch, args.own)
    else:
        print(ensure_pair())


if __name__ == "__main__":
    main()
