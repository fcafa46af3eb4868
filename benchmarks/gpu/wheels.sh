#!/usr/bin/env bash
# Run HERE (a machine with pip and the package registries), from the repo root, after scripts/setup.sh: fills .whl/
# with the wheels the GPU machine lacks, for its Python 3.12 on x86-64. Its image holds torch (CUDA), numpy,
# matplotlib, pyyaml, tqdm, pytest, hypothesis, ... but not the RL stack (SB3, sb3-contrib, SuperSuit, PettingZoo,
# mpe2, gymnasium, Optuna, VMAS), and nothing can be fetched there. Versions: those of .venv (constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf .whl && mkdir -p .whl
# Everything sb3_neppo and its tests import (with their dependencies) that the GPU image lacks.
names="stable-baselines3 sb3-contrib supersuit tinyscaler pettingzoo mpe2 pygame-ce gymnasium farama-notifications
optuna alembic sqlalchemy mako colorlog tzdata pyglet gym-notices psycopg psycopg-binary"
# name==version of every package in .venv, names as pip normalises them (SQLAlchemy -> sqlalchemy, sb3_contrib -> sb3-contrib)
freeze=$(.venv/bin/python -c 'import importlib.metadata as m, re
for d in m.distributions(): print(re.sub(r"[-_.]+", "-", d.name).lower() + "==" + d.version)')
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
--platform manylinux2014_x86_64 --platform manylinux1_x86_64"
for name in $names; do
    pin=$(grep -i "^${name}==" <<<"$freeze") || { echo "error: $name is not in .venv: run scripts/setup.sh first" >&2; exit 1; }
    # shellcheck disable=SC2086
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        $platforms -d .whl "$pin" 2> >(grep -v "is ignored: it is neither" >&2)
done
# VMAS and gym (VMAS imports it) are published as source archives only: build their (pure-Python) wheels here.
for name in vmas gym; do
    .venv/bin/python -m pip wheel -q --no-deps -w .whl "$(grep "^${name}==" <<<"$freeze")"
done
du -sh .whl && ls .whl
