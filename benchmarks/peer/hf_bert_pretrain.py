#!/usr/bin/env python3
"""The Hugging Face peer of `pld-bert pretrain --device cuda` (scripts/device-check.sh train):
BertForMaskedLM at the same shapes (layers, hidden, heads, FFN, vocabulary, sequence length,
batch), the same optimizer (AdamW, weight decay 0.01, gradient clipping at 1.0; PyTorch's fused
AdamW over fp32 master weights), 15% of the tokens labelled, dropout 0.1, bf16 autocast:

  eager     the model as transformers builds it (its default attention implementation, recorded)
  compiled  the same model under torch.compile

and, in the same process, the GEMM ceiling: the median time of the layer's largest product
(B*T x H) x (H x 4H) in bf16 through torch.matmul (cuBLAS), as achieved FLOP/s.

Tokens per second are measured over --steps steps after --warmup steps (CUDA-synchronised wall
time). The data are random token ids (the step's cost does not depend on them). Note the work is
not identical to pld-bert's: BertForMaskedLM computes the vocabulary logits for every position,
pld-bert only for the masked ones; the table divides both by the same useful FLOPs.

Writes one JSON object to --out (rewritten after every row, so a timeout keeps what finished);
a mode that fails becomes a row with "error" and the others go on (exit 3 then).
"""
import argparse
import json
import os
import statistics
import sys
import time


def write(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--modes", default="eager,compiled")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch
    from transformers import BertConfig, BertForMaskedLM
    import transformers

    dev = torch.device("cuda")
    result = {"torch": torch.__version__, "transformers": transformers.__version__, "gpu": torch.cuda.get_device_name(0),
              "shape": {"layers": a.layers, "hidden": a.hidden, "heads": a.heads, "ffn": 4 * a.hidden, "vocab": a.vocab,
                        "seq": a.seq, "batch": a.batch}, "rows": []}

    # The GEMM ceiling: the layer's largest product in bf16.
    try:
        m, k, n = a.batch * a.seq, a.hidden, 4 * a.hidden
        x = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        w = torch.randn(k, n, device=dev, dtype=torch.bfloat16)
        times = []
        for _ in range(30):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(10):
                torch.matmul(x, w)
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / 10 / 1e3)
        t = statistics.median(times[5:])
        result["gemm_ceiling"] = {"m": m, "k": k, "n": n, "seconds": t, "flops_per_s": 2.0 * m * k * n / t}
    except Exception as ex:  # noqa: BLE001 -- recorded, the rows go on
        result["gemm_ceiling"] = {"error": repr(ex)}
    write(a.out, result)

    failed = False
    for mode in a.modes.split(","):
        row = {"mode": mode}
        try:
            torch.manual_seed(1)
            cfg = BertConfig(vocab_size=a.vocab, hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads,
                             intermediate_size=4 * a.hidden, max_position_embeddings=a.seq, hidden_dropout_prob=0.1,
                             attention_probs_dropout_prob=0.1)
            model = BertForMaskedLM(cfg).to(dev).train()
            row["attention"] = getattr(model.config, "_attn_implementation", "unknown")
            opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01, fused=True)
            run = torch.compile(model) if mode == "compiled" else model
            ids = torch.randint(5, a.vocab, (a.batch, a.seq), device=dev)
            labels = torch.where(torch.rand(a.batch, a.seq, device=dev) < 0.15, ids, torch.full_like(ids, -100))

            def step():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = run(input_ids=ids, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                return loss

            t0 = time.time()
            for _ in range(a.warmup):
                loss = step()
            torch.cuda.synchronize()
            row["warmup_s"] = time.time() - t0
            t0 = time.time()
            for _ in range(a.steps):
                loss = step()
            torch.cuda.synchronize()
            dt = time.time() - t0
            row.update({"steps": a.steps, "seconds": dt, "tokens_per_s": a.steps * a.batch * a.seq / dt, "last_loss": float(loss),
                        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30})
            del model, opt, run
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        except Exception as ex:  # noqa: BLE001 -- recorded, the other modes go on
            row["error"] = repr(ex)[:500]
            failed = True
        result["rows"].append(row)
        write(a.out, result)
        print(json.dumps(row), flush=True)
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
