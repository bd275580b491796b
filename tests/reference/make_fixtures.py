#!/usr/bin/env python3
"""Golden data for the CPU layer (Pre-LN and Post-LN), from PyTorch.

Builds torch.nn.TransformerEncoderLayer(norm_first=True, or False for the post_* cases,
activation="gelu", dropout=0, batch_first=True) in float64 with weights and inputs drawn here, runs forward and backward of
loss = sum(y * dy), and writes the output, the input gradient and every parameter gradient to a
small text file per case under tests/reference/fixtures/. The C++ test
(tests/test_cpu_reference.cpp) loads the same weights and inputs from the file, runs
pld::cpu::PreLnLayer<double> and compares.

Regenerate (Debian: apt-get install python3-torch):
    /usr/bin/python3 tests/reference/make_fixtures.py

File format, one tensor per line:  name ndim d0 .. d{ndim-1} v0 v1 ...   (values as %.17g)
Inputs:  config (B,T,H,heads,F), ln_eps, x (B,T,H), dy (B,T,H), valid (B,T) 1 = real token, param.<PyTorch name>
Outputs: y, dx, grad.<PyTorch name>
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

# (name, B, T, H, heads, F, padding lengths or None, ln_eps); names starting with post_ are Post-LN
CASES = [
    ("h8_n2_f32", 2, 5, 8, 2, 32, None, 1e-5),
    ("h8_n2_f32_padded", 2, 5, 8, 2, 32, [3, 5], 1e-5),
    ("h12_n3_f20_padded", 3, 4, 12, 3, 20, [4, 1, 2], 1e-12),
    ("post_h8_n2_f32_padded", 2, 5, 8, 2, 32, [3, 5], 1e-5),
    ("post_h12_n3_f20_padded", 3, 4, 12, 3, 20, [4, 1, 2], 1e-12),
]


def write_tensor(f, name, t):
    t = t.detach().to(torch.float64).contiguous()
    dims = list(t.shape)
    values = " ".join("%.17g" % v for v in t.reshape(-1).tolist())
    f.write("%s %d %s %s\n" % (name, len(dims), " ".join(str(d) for d in dims), values))


def make_case(name, B, T, H, heads, F, lengths, eps):
    gen = torch.Generator().manual_seed(sum(map(ord, name)))  # fixed per case, stable across runs
    layer = torch.nn.TransformerEncoderLayer(
        d_model=H, nhead=heads, dim_feedforward=F, dropout=0.0, activation="gelu",
        layer_norm_eps=eps, batch_first=True, norm_first=not name.startswith("post_")).to(torch.float64)
    layer.train()
    with torch.no_grad():
        for pname, p in layer.named_parameters():
            if "norm" in pname and pname.endswith("weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(B, T, H, generator=gen, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(B, T, H, generator=gen, dtype=torch.float64)
    valid = torch.ones(B, T, dtype=torch.float64)
    mask = None
    if lengths is not None:
        for b, n in enumerate(lengths):
            valid[b, n:] = 0
        mask = valid == 0  # PyTorch: True = padding, ignored as a key
    y = layer(x, src_key_padding_mask=mask)
    (y * dy).sum().backward()

    path = os.path.join(OUT, name + ".txt")
    with open(path, "w") as f:
        f.write("# made by tests/reference/make_fixtures.py with torch %s; do not edit\n" % torch.__version__)
        f.write("config 1 5 %d %d %d %d %d\n" % (B, T, H, heads, F))
        f.write("ln_eps 1 1 %.17g\n" % eps)
        write_tensor(f, "x", x)
        write_tensor(f, "dy", dy)
        write_tensor(f, "valid", valid)
        for pname, p in layer.named_parameters():
            write_tensor(f, "param." + pname, p)
        write_tensor(f, "y", y)
        write_tensor(f, "dx", x.grad)
        for pname, p in layer.named_parameters():
            write_tensor(f, "grad." + pname, p.grad)
    print("wrote", os.path.relpath(path))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.use_deterministic_algorithms(True)
    for case in CASES:
        make_case(*case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
