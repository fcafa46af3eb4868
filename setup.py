from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="sb3_neppo",
    version="0.1.0",
    description="NePPO (Near-Potential Policy Optimization): approximate Nash equilibria of general-sum multi-agent games, "
    "in the Stable-Baselines3 ecosystem",
    long_description=Path("README.md").read_text(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["sb3_neppo", "sb3_neppo.*"]),
    package_data={"sb3_neppo": ["hyperparams/*.yml", "py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        # torch: on CPU-only machines install the CPU build first (see constraints.txt and scripts/setup.sh)
        "torch>=2.3,<3",
        "stable-baselines3>=2.4,<3",
        "sb3-contrib>=2.4,<3",
        "supersuit>=3.9,<4",
        "pettingzoo>=1.24,<2",
        "mpe2>=1.0,<2",
        "gymnasium>=1.0,<2",
        "optuna>=4.0,<6",
        "numpy>=1.26,<3",
        "pyyaml>=6,<7",
        "tqdm>=4.66,<5",
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        "tests": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",  # one test process per core: pyproject addopts -n auto
            "hypothesis>=6.100,<7",
            "ruff>=0.6",
            "psycopg[binary]>=3.2,<4",
            "tensorboard>=2.15,<3",
            "vmas>=1.5,<2",
            "pettingzoo[butterfly]>=1.24,<2",  # pistonball and knights-archers-zombies: large observations, long episodes
        ],
        "butterfly": ["pettingzoo[butterfly]>=1.24,<2"],  # --env pettingzoo.butterfly.<game>
        "dashboard": ["optuna-dashboard>=0.21,<1"],
        "postgres": ["psycopg[binary]>=3.2,<4"],  # SQLAlchemy 2.1 reads postgresql:// as psycopg 3
        "tensorboard": ["tensorboard>=2.15,<3"],  # -tb
        "vmas": ["vmas>=1.5,<2"],  # --env vmas:<scenario>
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    license="MIT",
)
