"""The Vowpal Wabbit backend: the cb_adf text, exact sequential propensities, online learning,
the model file, and one workspace per process."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import chisquare

from explore import Policy
from explore.vw_format import (
    ActionFeatures,
    CbLabel,
    LoggedSlate,
    RequestContext,
    cb_adf_lines,
    daypart_name,
    slate_examples,
)
from explore.vw_policy import VowpalWabbitSlate, WorkspaceForkedError

CONTEXT = RequestContext(surface="home", device="tv", daypart="evening", country="US")


def actions_of(n: int, *, dim: int = 0, seed: int = 0) -> ActionFeatures:
    rng = np.random.default_rng(seed)
    return ActionFeatures(
        scores=rng.random(n),
        item_ids=np.arange(100, 100 + n),
        item_embeddings=rng.normal(size=(n, dim)) if dim else None,
    )


def trained_policy(
    *, best: int, n: int = 5, rounds: int = 300, seed: int = 0, **options: Any
) -> tuple[VowpalWabbitSlate, ActionFeatures]:
    """A policy that learned online, on its own sampled choices, that only ``best`` pays."""
    policy = VowpalWabbitSlate(**options)
    actions = actions_of(n, dim=3)
    rng = np.random.default_rng(seed)
    for _ in range(rounds):
        slate = policy.decide_with(CONTEXT, actions, 1, rng)
        chosen = int(slate.indices[0])
        policy.learn(
            CONTEXT,
            actions,
            chosen=chosen,
            reward=1.0 if chosen == best else 0.0,
            probability=float(slate.cond_propensity[0]),
        )
    return policy, actions


# -- the text format ---------------------------------------------------------------------------


def test_cb_adf_lines_exact_text_with_label_on_chosen_line() -> None:
    context = RequestContext(
        surface="home",
        device="tv",
        daypart="evening",
        country="US",
        query="Star  Wars",
        user_embedding=np.array([0.5, -0.25]),
    )
    actions = ActionFeatures(
        scores=np.array([0.75, 0.125]),
        item_ids=np.array([101, 205]),
        item_embeddings=np.array([[1.0, 0.0], [0.5, -2.0]]),
    )
    lines = cb_adf_lines(context, actions, label=CbLabel(action=1, cost=-1.0, probability=0.25))
    assert lines == [
        "shared |c surface=home device=tv daypart=evening country=US"
        " |q star wars |u u0:0.5 u1:-0.25",
        "|a id=101 score:0.75 |e e0:1 e1:0",
        "0:-1:0.25 |a id=205 score:0.125 |e e0:0.5 e1:-2",
    ]


def test_cb_adf_lines_unlabelled_scores_only_and_zero_cost_is_written_as_0() -> None:
    actions = ActionFeatures(scores=np.array([0.5, 1 / 3]))
    assert cb_adf_lines(RequestContext(), actions) == [
        "shared |c",
        "|a score:0.5",
        "|a score:0.333333333",
    ]
    labelled = cb_adf_lines(
        RequestContext(), actions, label=CbLabel(action=0, cost=-0.0, probability=1.0)
    )
    assert labelled[1] == "0:0:1 |a score:0.5"


def test_feature_names_are_sanitized_of_spaces_pipes_and_colons() -> None:
    context = RequestContext(
        surface="home page", device="smart|tv", country="U:S", query="a:b  C|d \t :"
    )
    assert (
        context.shared_line()
        == "shared |c surface=home_page device=smart_tv country=U_S |q a_b c_d _"
    )


def test_cb_adf_lines_lists_the_given_candidates_in_order() -> None:
    actions = ActionFeatures(scores=np.array([0.1, 0.2, 0.3]), item_ids=np.array([7, 8, 9]))
    lines = cb_adf_lines(
        CONTEXT,
        actions,
        candidates=np.array([2, 0]),
        label=CbLabel(action=1, cost=-2.5, probability=0.5),
    )
    assert lines[1:] == ["|a id=9 score:0.3", "0:-2.5:0.5 |a id=7 score:0.1"]


def test_slate_examples_drop_items_shown_above_and_use_conditional_propensities() -> None:
    logged = LoggedSlate(
        context=CONTEXT,
        actions=ActionFeatures(scores=np.array([0.1, 0.2, 0.3, 0.4]), item_ids=np.arange(4)),
        chosen=np.array([2, 0]),
        cond_propensity=np.array([0.5, 0.25]),
        reward=np.array([0.0, 1.0]),
    )
    first, second = slate_examples(logged, all_positions=True)
    assert first[1:] == [
        "|a id=0 score:0.1",
        "|a id=1 score:0.2",
        "0:0:0.5 |a id=2 score:0.3",
        "|a id=3 score:0.4",
    ]
    assert second[1:] == ["0:-1:0.25 |a id=0 score:0.1", "|a id=1 score:0.2", "|a id=3 score:0.4"]
    assert list(slate_examples(logged)) == [first]


@pytest.mark.parametrize(
    ("hour", "daypart"),
    [
        (5.0, "morning"),
        (11.99, "morning"),
        (12.0, "afternoon"),
        (17.5, "evening"),
        (23.0, "night"),
        (4.5, "night"),
    ],
)
def test_daypart_name_boundaries(hour: float, daypart: str) -> None:
    assert daypart_name(hour) == daypart


def test_vw_accepts_the_text_for_learning() -> None:
    import vowpalwabbit

    logged = LoggedSlate(
        context=RequestContext(surface="home", query="x:y", user_embedding=np.array([0.1])),
        actions=actions_of(4, dim=2),
        chosen=np.array([3, 1]),
        cond_propensity=np.array([0.4, 0.3]),
        reward=np.array([1.0, 0.0]),
    )
    with vowpalwabbit.Workspace(arg_list=["--cb_adf", "--quiet"]) as workspace:
        for lines in slate_examples(logged, all_positions=True):
            workspace.learn(lines)
        assert workspace.get_weighted_examples() == 2


BAD_INPUTS: list[tuple[Any, str]] = [
    (lambda: ActionFeatures(scores=np.array([[0.1]])), "scores must be a 1-D array"),
    (lambda: ActionFeatures(scores=np.array([])), "scores must list at least one"),
    (lambda: ActionFeatures(scores=np.array([0.1, np.nan])), r"scores must be finite; got nan"),
    (
        lambda: ActionFeatures(scores=np.array([0.1, 0.2]), item_ids=np.array([1])),
        r"item_ids must be \(2,\) integers",
    ),
    (
        lambda: ActionFeatures(scores=np.array([0.1, 0.2]), item_ids=np.array([1.5, 2.0])),
        "item_ids must be",
    ),
    (
        lambda: ActionFeatures(scores=np.array([0.1, 0.2]), item_embeddings=np.zeros((3, 2))),
        r"item_embeddings must have one row per score \(2\)",
    ),
    (
        lambda: ActionFeatures(scores=np.array([0.1, 0.2]), item_embeddings=np.zeros(2)),
        "item_embeddings must be a 2-D array",
    ),
    (lambda: RequestContext(user_embedding=np.zeros((2, 2))), "user_embedding must be a 1-D"),
    (lambda: CbLabel(action=0, cost=0.0, probability=0.0), r"probability must be in \(0, 1\]"),
    (lambda: CbLabel(action=0, cost=float("nan"), probability=0.5), "cost must be finite"),
    (
        lambda: cb_adf_lines(
            CONTEXT, actions_of(2), label=CbLabel(action=2, cost=0.0, probability=0.5)
        ),
        "label.action must index the 2 listed candidates",
    ),
    (
        lambda: cb_adf_lines(CONTEXT, actions_of(2), candidates=np.array([0, 2])),
        "candidates must be a non-empty 1-D array of indices",
    ),
    (
        lambda: LoggedSlate(
            context=CONTEXT,
            actions=actions_of(3),
            chosen=np.array([0, 1]),
            cond_propensity=np.array([0.5]),
            reward=np.array([0.0, 1.0]),
            decision_id="d1",
        ),
        r"cond_propensity must have one entry per position \(2\) \(decision d1\)",
    ),
    (
        lambda: LoggedSlate(
            context=CONTEXT,
            actions=actions_of(3),
            chosen=np.array([0, 0]),
            cond_propensity=np.array([0.5, 0.5]),
            reward=np.array([0.0, 1.0]),
        ),
        "chosen must be distinct indices",
    ),
    (
        lambda: LoggedSlate(
            context=CONTEXT,
            actions=actions_of(3),
            chosen=np.array([0]),
            cond_propensity=np.array([1.5]),
            reward=np.array([0.0]),
        ),
        r"cond_propensity must be in \(0, 1\]; got 1.5 at position 0",
    ),
    (lambda: VowpalWabbitSlate(exploration="ucb"), "exploration must be one of"),  # type: ignore[arg-type]
    (lambda: VowpalWabbitSlate(epsilon=1.5), r"epsilon must be in \[0, 1\]"),
    (lambda: VowpalWabbitSlate(gamma_scale=0.0), "gamma_scale must be > 0"),
    (lambda: VowpalWabbitSlate(exploration="bag", bag=0), "bag and cover must be >= 1"),
    (lambda: VowpalWabbitSlate(interactions=("c",)), "interactions must be namespace letters"),
    (
        lambda: VowpalWabbitSlate().decide(np.array([0.1, 0.2]), 0, np.random.default_rng(0)),
        "k must be >= 1",
    ),
    (
        lambda: VowpalWabbitSlate().learn(
            CONTEXT, actions_of(3), chosen=3, reward=1.0, probability=0.5
        ),
        "chosen must index the 3 candidates",
    ),
    (
        lambda: VowpalWabbitSlate().learn(
            CONTEXT, actions_of(3), chosen=0, reward=1.0, probability=0.0
        ),
        r"probability must be in \(0, 1\]",
    ),
]


@pytest.mark.parametrize(("make", "message"), BAD_INPUTS)
def test_bad_input_raises_naming_the_field(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# -- deciding with exact propensities ------------------------------------------------------------


def test_vw_policy_satisfies_the_policy_interface() -> None:
    assert isinstance(VowpalWabbitSlate(), Policy)


@pytest.mark.parametrize("exploration", ["squarecb", "epsilon", "bag", "cover"])
def test_decide_replays_from_the_same_seed_and_slate_probability_matches_prefixes(
    exploration: str,
) -> None:
    policy, actions = trained_policy(best=2, rounds=60, exploration=exploration)
    first = policy.decide_with(CONTEXT, actions, 3, np.random.default_rng(42))
    again = policy.decide_with(CONTEXT, actions, 3, np.random.default_rng(42))
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.cond_propensity, again.cond_propensity)
    np.testing.assert_array_equal(first.prefix_propensity, np.cumprod(first.cond_propensity))
    for j in range(1, 4):
        assert policy.slate_probability_with(CONTEXT, actions, first.indices[:j]) == pytest.approx(
            first.prefix_propensity[j - 1], rel=1e-12
        )
    assert first.prefix_propensity[-1] == policy.slate_probability_with(
        CONTEXT, actions, first.indices
    )
    assert first.marginals_exact is False
    assert np.isnan(first.propensity[1:]).all()
    assert first.propensity[0] == first.cond_propensity[0]
    np.testing.assert_array_equal(first.scores, actions.scores[first.indices])


def test_pmf_sums_to_one_and_is_the_marginal_for_a_single_slot() -> None:
    policy, actions = trained_policy(best=1, rounds=100, exploration="epsilon", epsilon=0.2)
    pmf = policy.pmf_with(CONTEXT, actions)
    assert pmf.shape == (5,)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert (pmf > 0).all()
    slate = policy.decide_with(CONTEXT, actions, 1, np.random.default_rng(3))
    assert slate.marginals_exact
    assert slate.propensity[0] == pmf[slate.indices[0]]


def test_marginals_for_one_slot_from_scores_and_a_clear_error_beyond() -> None:
    policy = VowpalWabbitSlate(exploration="epsilon", epsilon=0.1)
    scores = np.array([0.2, 0.5, 0.3])
    marginals = policy.marginals(scores, 1)
    assert marginals.shape == (1, 3)
    assert marginals.sum() == pytest.approx(1.0)
    with pytest.raises(NotImplementedError, match="exact marginals for k=1 only; got k=2"):
        policy.marginals(scores, 2)


@pytest.mark.parametrize("k", [2, 3])
def test_slate_probabilities_over_every_ordered_slate_sum_to_one(k: int) -> None:
    policy, _ = trained_policy(best=0, n=4, rounds=80)
    actions = actions_of(4, dim=3)
    total = sum(
        policy.slate_probability_with(CONTEXT, actions, np.array(slate))
        for slate in itertools.permutations(range(4), k)
    )
    assert total == pytest.approx(1.0, abs=1e-12)


def test_slate_probability_is_zero_for_slates_the_policy_cannot_show() -> None:
    policy = VowpalWabbitSlate()
    scores = np.array([0.1, 0.2, 0.3])
    assert policy.slate_probability(scores, np.array([0, 0])) == 0.0
    assert policy.slate_probability(scores, np.array([3])) == 0.0
    assert policy.slate_probability(scores, np.array([], dtype=np.int64)) == 0.0


def test_sampled_slate_frequencies_match_slate_probabilities() -> None:
    """Chi-square over the 12 ordered pairs of 4 candidates, 3,000 decisions, α = 0.01."""
    policy, actions = trained_policy(best=1, n=4, rounds=150, exploration="epsilon", epsilon=0.4)
    slates = list(itertools.permutations(range(4), 2))
    expected = np.array(
        [policy.slate_probability_with(CONTEXT, actions, np.array(s)) for s in slates]
    )
    rng = np.random.default_rng(7)
    counts = dict.fromkeys(slates, 0)
    draws = 3000
    for _ in range(draws):
        slate = policy.decide_with(CONTEXT, actions, 2, rng)
        counts[(int(slate.indices[0]), int(slate.indices[1]))] += 1
    observed = np.array([counts[s] for s in slates])
    assert expected.min() * draws > 5
    assert chisquare(observed, expected * draws).pvalue > 0.01


def test_decide_from_scores_only_and_k_larger_than_candidates() -> None:
    policy = VowpalWabbitSlate()
    slate = policy.decide(np.array([0.3, 0.1]), 5, np.random.default_rng(0))
    assert sorted(slate.indices.tolist()) == [0, 1]
    assert slate.prefix_propensity[-1] == pytest.approx(0.5)  # a fresh model is uniform


# -- learning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("exploration", ["squarecb", "epsilon"])
def test_online_learning_moves_the_pmf_to_the_action_that_pays(exploration: str) -> None:
    policy, actions = trained_policy(best=3, n=6, rounds=2000, exploration=exploration)
    pmf = policy.pmf_with(CONTEXT, actions)
    assert int(np.argmax(pmf)) == 3
    assert pmf[3] > 0.5
    assert policy.params()["updates"] == 2000
    slate = policy.decide_with(CONTEXT, actions, 2, np.random.default_rng(0))
    assert slate.exploration == policy.params()
    assert slate.exploration["exploration"] == exploration


def test_learning_from_logged_slates_counts_examples_and_learns_the_paying_item() -> None:
    actions = actions_of(4)
    rng = np.random.default_rng(1)
    logged = []
    for _ in range(400):
        chosen = rng.permutation(4)[:2]
        logged.append(
            LoggedSlate(
                context=CONTEXT,
                actions=actions,
                chosen=chosen,
                cond_propensity=np.array([1 / 4, 1 / 3]),
                reward=(chosen == 2).astype(float),
            )
        )
    policy = VowpalWabbitSlate(exploration="epsilon", epsilon=0.1)
    assert policy.learn_logged(logged, all_positions=True) == 800
    assert int(np.argmax(policy.pmf_with(CONTEXT, actions))) == 2


# -- the model file -----------------------------------------------------------------------------


def test_save_and_load_give_identical_pmfs_and_leave_no_temporary_file(tmp_path: Path) -> None:
    policy, actions = trained_policy(best=4, rounds=200)
    path = policy.save(tmp_path / "models" / "vw.model")
    assert sorted(p.name for p in path.parent.iterdir()) == ["vw.model"]
    reference = policy.pmf_with(CONTEXT, actions)
    reopened = VowpalWabbitSlate(model_path=path)
    np.testing.assert_array_equal(reopened.pmf_with(CONTEXT, actions), reference)
    fresh = VowpalWabbitSlate()
    fresh.load(path)
    np.testing.assert_array_equal(fresh.pmf_with(CONTEXT, actions), reference)
    assert fresh.params()["model"] == str(path)
    slate = policy.decide_with(CONTEXT, actions, 3, np.random.default_rng(5))
    assert reopened.slate_probability_with(CONTEXT, actions, slate.indices) == slate.probability


def test_missing_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model_path must be a saved VW model"):
        VowpalWabbitSlate(model_path=tmp_path / "absent.model")
    with pytest.raises(FileNotFoundError, match="path must be a saved VW model"):
        VowpalWabbitSlate().load(tmp_path / "absent.model")


# -- one workspace per process ------------------------------------------------------------------


def test_pickling_raises_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"cannot be pickled.*save\(path\)"):
        pickle.dumps(VowpalWabbitSlate())


def _in_forked_child(run: Any) -> tuple[int, str]:
    """Run ``run()`` in a forked child; its exit code (0 = returned) and what it wrote."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child process
        os.close(read_end)
        code = 0
        try:
            message = str(run())
        except Exception as err:  # the child reports every failure
            message, code = f"{type(err).__name__}: {err}", 1
        os.write(write_end, message.encode())
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), message


def test_forked_child_with_unsaved_updates_raises_and_after_save_opens_its_own(
    tmp_path: Path,
) -> None:
    policy, actions = trained_policy(best=2, rounds=50)
    code, message = _in_forked_child(lambda: policy.pmf_with(CONTEXT, actions))
    assert code == 1
    assert message.startswith(WorkspaceForkedError.__name__)
    assert "save(path) before forking" in message

    policy.save(tmp_path / "vw.model")
    reference = policy.pmf_with(CONTEXT, actions)
    code, message = _in_forked_child(lambda: json.dumps(policy.pmf_with(CONTEXT, actions).tolist()))
    assert code == 0, message
    np.testing.assert_array_equal(np.array(json.loads(message)), reference)
    # The parent's workspace is untouched by the child.
    np.testing.assert_array_equal(policy.pmf_with(CONTEXT, actions), reference)


def test_concurrent_decisions_from_threads_equal_sequential_ones() -> None:
    policy, actions = trained_policy(best=1, rounds=100)
    seeds = list(range(40))
    sequential = {
        s: policy.decide_with(CONTEXT, actions, 3, np.random.default_rng(s)) for s in seeds
    }
    results: dict[int, Any] = {}

    def work(part: list[int]) -> None:
        for s in part:
            results[s] = policy.decide_with(CONTEXT, actions, 3, np.random.default_rng(s))

    threads = [threading.Thread(target=work, args=(seeds[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for s in seeds:
        np.testing.assert_array_equal(results[s].indices, sequential[s].indices)
        np.testing.assert_array_equal(results[s].cond_propensity, sequential[s].cond_propensity)


def test_close_then_use_reopens_from_the_saved_model(tmp_path: Path) -> None:
    policy, actions = trained_policy(best=0, rounds=80)
    policy.save(tmp_path / "vw.model")
    reference = policy.pmf_with(CONTEXT, actions)
    with policy:
        pass
    np.testing.assert_array_equal(policy.pmf_with(CONTEXT, actions), reference)
