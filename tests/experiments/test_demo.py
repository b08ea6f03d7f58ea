"""The `make demo` script on a shortened schedule: both methods, one table."""

from experiments import demo


def test_demo_trains_both_methods_and_prints_the_table(tmp_path):
    rows, per_seed, root, n_test = demo.run_demo(steps=15, seeds=(0,), logdir=str(tmp_path), verbose=False)
    assert [r[0] for r in rows] == ["untrained MLP", "N-pair", "Symm+N-pair"]
    assert n_test == 896 and set(per_seed) == {"untrained", "npair", "symm_npair"}
    for _, metrics, _ in rows:
        assert all(0.0 <= metrics[c] <= 1.0 for c in demo.COLUMNS)
    # The two runs really differ (different losses on the same batches).
    assert per_seed["npair"][0] != per_seed["symm_npair"][0]
    table = demo.format_table(rows)
    assert table.splitlines()[0].startswith("| method | NMI | F1 | R@1 | R@2 | R@4 | R@8 | MAP@R |")
    assert f"{100 * rows[2][1]['recall@1']:.1f}" in table.splitlines()[-1]
    assert (tmp_path / "symm_npair_seed0" / "results.json").exists()
