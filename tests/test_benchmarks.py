"""How `make bench-calibration` chooses the recipe to ship: validation numbers only."""

from __future__ import annotations

from benchmarks.bench_calibration import EXPORTED_VAL, chosen_on_validation, exported_val_accuracy, significantly_more


def row(name: str, fa_per_hour: float, hit: float, accuracy: float = 0.96, gate_cost: float = 0.0) -> dict:
    out = {
        "config": name,
        "runs": 3,
        "val_stream_negatives_hours": 3.0,
        "val_fa_per_hour_at_50pct_miss": fa_per_hour,
        "val_stream_hit_rate": hit,
        "val_command_accuracy": accuracy,
        "gate_command_cost": gate_cost,
    }
    return {**out, EXPORTED_VAL: exported_val_accuracy(out)}


def test_a_few_false_accepts_in_27_hours_are_a_tie_and_the_hit_rate_decides():
    words_only = row("words only", 139.4, 0.01, accuracy=0.968)
    before, recipe, wider = row("before", 5.44, 0.12), row("recipe", 1.22, 0.31), row("wider", 1.0, 0.21)
    assert significantly_more(before, wider)  # 49 against 9 false accepts
    assert not significantly_more(recipe, wider)  # 11 against 9
    assert chosen_on_validation([words_only, before, recipe, wider]) == "recipe"
    many = row("recipe, many more", 2.5, 0.31)  # 22 against 9 in the same hours
    assert chosen_on_validation([words_only, before, many, wider]) == "wider"


def test_a_recipe_that_costs_more_than_a_point_of_command_accuracy_is_not_chosen():
    words_only = row("words only", 139.4, 0.01, accuracy=0.968)
    assert chosen_on_validation([words_only, row("deaf", 0.0, 0.5, accuracy=0.95), row("fair", 3.0, 0.1)]) == "fair"
    assert chosen_on_validation([words_only, row("deaf", 0.0, 0.5, accuracy=0.95)]) is None


def test_the_accuracy_a_recipe_is_chosen_by_is_the_one_it_is_exported_with():
    words_only = row("words only", 139.4, 0.01, accuracy=0.968, gate_cost=0.002)
    gated_hard = row("gated hard", 1.0, 0.5, accuracy=0.962, gate_cost=0.01)  # 0.6 points before its rule, 1.4 after
    assert chosen_on_validation([words_only, gated_hard, row("fair", 3.0, 0.1)]) == "fair"
    assert chosen_on_validation([words_only, row("gated gently", 1.0, 0.5, accuracy=0.962, gate_cost=0.003)]) == (
        "gated gently"
    )
