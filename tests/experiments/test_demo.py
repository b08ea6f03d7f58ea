"""`make demo` on a shortened schedule: the protocol's split, the claim its summary line makes, the table."""

import numpy as np

from experiments import demo


def test_numbers_split_by_class_and_by_image():
    train, test, rows = demo.number_sources(items_per_number=4)
    train_numbers, test_numbers = set(train.labels.tolist()), set(test.labels.tolist())
    assert len(train_numbers) == len(test_numbers) == 50 and not train_numbers & test_numbers
    for numbers in (train_numbers, test_numbers):  # every digit in both places on both sides
        assert {n // 10 for n in numbers} == {n % 10 for n in numbers} == set(range(10))
    assert not set(rows["train"].ravel()) & set(rows["test"].ravel())  # test items use unseen images only
    assert train.x.shape == test.x.shape == (200, 128)
    # An item of number ab is digit a's image beside digit b's.
    from sklearn.datasets import load_digits

    digits = load_digits()
    item = 7
    a, b = rows["test"][item]
    assert divmod(int(test.labels[item]), 10) == (digits.target[a], digits.target[b])
    np.testing.assert_array_equal(test.x[item], np.concatenate([digits.data[a], digits.data[b]]) / 16.0)


def test_training_clearly_beats_the_untrained_network_and_the_line_says_so(tmp_path):
    rows, per_seed, root, n_test = demo.run_demo(steps=150, seeds=(0,), logdir=str(tmp_path),
                                                 items_per_number=10, verbose=False)  # fmt: skip
    assert [r[0] for r in rows] == ["untrained (same network at init)", "N-pair", "Symm+N-pair"]
    assert n_test == 500 and set(per_seed) == {"untrained", "npair", "symm_npair"}
    for _, metrics, _ in rows:
        assert all(0.0 <= metrics[c] <= 1.0 for c in demo.COLUMNS)
    untrained = per_seed["untrained"][0]
    for method in ("npair", "symm_npair"):  # the claim, checked directly
        for metric in demo.CLAIM_METRICS:
            assert per_seed[method][0][metric] >= untrained[metric] + demo.CLAIM_MARGIN, (method, metric)
    assert per_seed["npair"][0] != per_seed["symm_npair"][0]  # different losses on the same batches
    line = demo.summary_line(per_seed, (0,))
    assert line.startswith("Learning carries over") and "NOT shown" not in line
    assert f"MAP@R {100 * untrained['map@r']:.1f} → {100 * per_seed['npair'][0]['map@r']:.1f}" in line
    table = demo.format_table(rows)
    assert table.splitlines()[0].startswith("| method | NMI | F1 | R@1 | R@2 | R@4 | R@8 | MAP@R |")
    assert f"{100 * rows[2][1]['map@r']:.1f}" in table.splitlines()[-1]
    assert (tmp_path / "symm_npair_seed0" / "results.json").exists()


def _run(map_r, nmi):
    return {"map@r": map_r, "nmi": nmi}


def test_the_line_says_not_shown_where_the_claim_fails():
    per_seed = {
        "untrained": [_run(0.20, 0.50), _run(0.20, 0.50)],
        "npair": [_run(0.60, 0.90), _run(0.60, 0.90)],
        "symm_npair": [_run(0.62, 0.90), _run(0.22, 0.90)],  # seed 8: MAP@R only 2 points above
    }
    line = demo.summary_line(per_seed, (7, 8))
    assert line.startswith("NOT shown") and "Symm+N-pair MAP@R seed 8" in line
    assert "N-pair MAP@R seed 7" not in line and "no consistent MAP@R difference" in line
    per_seed["symm_npair"][1] = _run(0.65, 0.91)
    line = demo.summary_line(per_seed, (7, 8))
    assert line.startswith("Learning carries over") and "all 2 seed(s)" in line
    assert "MAP@R 20.0 → 60.0 / 63.5" in line and "higher than N-pair's in every seed" in line
