"""Near matching of query words (fm_core.term_match): prefixes and one typing error match a
title word nearly, words some title has are taken as typed, anything else does not match."""

from __future__ import annotations

import pytest

from fm_core.term_match import NEAR_STRENGTH, TermMatcher, match_strength, within_one_edit


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("tenipi", "tenipi", False),  # equal is not one edit
        ("tenpi", "tenipi", True),  # a letter dropped
        ("tenniipi", "tenipi", False),  # two letters added
        ("tneipi", "tenipi", True),  # neighbours swapped
        ("tenipo", "tenipi", True),  # a letter replaced
        ("tinepi", "tenipi", False),  # two letters replaced
        ("tenipii", "tenipi", True),  # a letter doubled
    ],
)
def test_one_edit_is_one_insert_delete_replace_or_swap(a: str, b: str, expected: bool) -> None:
    assert within_one_edit(a, b) is expected
    assert within_one_edit(b, a) is expected


def test_match_strength_grades_exact_near_and_unrelated_words() -> None:
    assert match_strength("volu", "volu") == 1.0
    assert match_strength("ten", "tenipi") == NEAR_STRENGTH  # a prefix typed so far
    assert match_strength("te", "tenipi") == 0.0  # too short a prefix
    assert match_strength("vlou", "volu") == NEAR_STRENGTH
    assert match_strength("ab", "ac") == 0.0  # too short for a typo
    assert match_strength("kaso", "volu") == 0.0


def test_only_words_no_title_has_are_looked_up_nearly() -> None:
    matcher = TermMatcher(["volu", "vola", "tenipi"])
    assert "volu" in matcher and "volx" not in matcher
    assert matcher.near("volu") == {}  # known: taken as typed, never diluted by "vola"
    assert matcher.near("volx") == {"vola": NEAR_STRENGTH, "volu": NEAR_STRENGTH}
    assert matcher.near("tenip") == {"tenipi": NEAR_STRENGTH}
    assert matcher.near("zzzz") == {}
