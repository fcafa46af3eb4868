"""Branches solved in worker processes give the same numbers as in the main process."""

import numpy as np
import pytest

from sb3_neppo import NePPO
from sb3_neppo.errors import ConfigError

SB3 = dict(n_envs=2, br_updates=2, eval_episodes=3, ppo=dict(n_steps=8, batch_size=32, n_epochs=2, learning_rate=0.02))


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, kwargs",
    [
        ("matrix-alpha", dict(env_kwargs={"alpha": 0.4}, n_directions=4)),
        ("mpe2.simple_tag_v3", dict(env_kwargs={"max_cycles": 8}, solver_kwargs=SB3, delta=0.05, lr=0.5, n_directions=2)),
        (  # the paper's cost: the next iteration starts from a branch, whose policies come back from a worker
            "mpe2.simple_tag_v3",
            dict(env_kwargs={"max_cycles": 8}, solver_kwargs=SB3, delta=0.05, lr=0.5, n_directions=1, iterate_solve="final"),
        ),
    ],
)
def test_two_workers_give_the_same_numbers_as_one(env, kwargs):
    one = NePPO(env, seed=1, **kwargs).learn(n_iterations=2)
    two = NePPO(env, seed=1, n_workers=2, **kwargs)
    two.learn(n_iterations=2)
    two.close()
    np.testing.assert_array_equal(one.result.w, two.result.w)
    np.testing.assert_array_equal(one.result.F.mean, two.result.F.mean)
    assert one.num_timesteps == two.num_timesteps
    assert not np.allclose(one.result.w, NePPO(env, seed=1, **kwargs).potential.get_flat_params())  # w did move


def test_bad_worker_settings():
    with pytest.raises(ConfigError, match="n_workers must be >= 1"):
        NePPO("matrix-alpha", n_workers=0)
