#!/usr/bin/env bash
# Installs the Debian packages pld's build, tests and benchmarks need; only what is missing.
# Safe to run any number of times. Needs root (or sudo) only when something must be installed.
set -euo pipefail

# libdnnl-dev: oneDNN, the GEMMs of pld::cpu in fp32 and bf16 (see PLD_CPU_ONEDNN in CMakeLists.txt).
# nlohmann-json3-dev: pld-bert's config files and metrics.
# python3: the report and plot scripts (scripts/ablation_report.py).
# libopenmpi-dev, openmpi-bin: data parallelism (pld::mpi, mpirun -np N pld-bert) and its tests.
# libtorch-dev: the LibTorch adapter (pld::torch), its tests and examples/libtorch.
packages=(g++ make cmake git python3 libeigen3-dev catch2 libbenchmark-dev libdnnl-dev nlohmann-json3-dev libopenmpi-dev openmpi-bin
          libtorch-dev)
# --peer: also the PyTorch peer of the CPU benchmarks (benchmarks/peer/torch_cpu_layer.py):
# python3-torch, and libopenblas0-pthread because without recommends apt satisfies torch's BLAS with
# the reference BLAS (netlib), ~50x slower than OpenBLAS, which would make the peer meaningless
# (seen in session 12: BERT-mini forward 1.8 s instead of ~0.06 s).
if [ "${1:-}" = --peer ]; then
  packages+=(python3-torch libopenblas0-pthread)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-deps: all packages present (${packages[*]})"
  exit 0
fi

echo "setup-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "setup-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup-deps: done"
