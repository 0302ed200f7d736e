"""The paper's published numbers, pinned: every value of Tables 1-6 written here as the paper prints it (its
rows in its order, its columns in its order) and checked against `orchestrator.report.published`, where the
report reads them by row key and k. A value read into the wrong row or column (Table 5 once had Uniform's
k=30 and the student's k=10 swapped) fails here with its row and column named."""

import pytest

from orchestrator.report import published

# Table 1: the rows top to bottom; per k, the GAP and the mAP column as printed.
T1_ROWS = ("baseline:uniform", "baseline:random", "baseline:first", "baseline:middle", "baseline:last",
           "baseline:first_middle_last", "parallel:rep", "parallel:rep+ce", "parallel:rep+pred+ce",
           "serial:rep_then_ce", "serial:pred", "serial:rep+ce", "serial:pred+ce", "serial:rep+pred+ce")
T1 = {  # k -> (GAP column, mAP column)
    6: ((0.715, 0.679, 0.478, 0.577, 0.255, 0.640, 0.724, 0.726, 0.729, 0.727, 0.722, 0.728, 0.724, 0.731),
        (0.266, 0.246, 0.133, 0.178, 0.062, 0.215, 0.280, 0.285, 0.292, 0.288, 0.287, 0.291, 0.289, 0.297)),
    10: ((0.759, 0.681, 0.539, 0.600, 0.267, 0.671, 0.762, 0.766, 0.770, 0.768, 0.766, 0.769, 0.763, 0.771),
         (0.324, 0.254, 0.163, 0.198, 0.067, 0.242, 0.331, 0.334, 0.337, 0.339, 0.341, 0.341, 0.341, 0.349)),
    15: ((0.777, 0.717, 0.595, 0.620, 0.282, 0.680, 0.785, 0.785, 0.789, 0.786, 0.784, 0.786, 0.785, 0.789),
         (0.350, 0.268, 0.199, 0.214, 0.077, 0.249, 0.365, 0.362, 0.371, 0.365, 0.367, 0.368, 0.369, 0.375)),
    20: ((0.785, 0.763, 0.632, 0.638, 0.294, 0.698, 0.794, 0.795, 0.796, 0.795, 0.793, 0.794, 0.795, 0.798),
         (0.363, 0.329, 0.223, 0.229, 0.083, 0.268, 0.380, 0.381, 0.388, 0.381, 0.383, 0.383, 0.386, 0.390)),
    30: ((0.795, 0.774, 0.676, 0.665, 0.317, 0.721, 0.803, 0.804, 0.806, 0.802, 0.798, 0.803, 0.799, 0.806),
         (0.378, 0.339, 0.258, 0.250, 0.094, 0.287, 0.392, 0.396, 0.404, 0.394, 0.390, 0.399, 0.391, 0.405)),
}
T1_SKYLINE = (0.811, 0.414)  # in its caption: GAP, mAP

# Table 2 (k=30): Serial then Uniform, each GAP then mAP, at 10%, 25%, 50% of the training data.
T2 = {"serial:rep+pred+ce": ((0.774, 0.788, 0.796), (0.345, 0.369, 0.373)),
      "baseline:uniform": ((0.718, 0.756, 0.776), (0.220, 0.301, 0.349))}
T2_SHARES = (0.1, 0.25, 0.5)

# Table 3: Teacher-Skyline, k=10, k=20, k=30: hours over the validation split, then billions of FLOPs.
T3 = (("all", 10, 20, 30), (13.00, 7.61, 8.20, 9.11), (5.058, 0.167, 0.268, 0.520))

# Table 4 (k=30): Parallel Lrep, Lrep + LCE, Lrep + Lpred (+ LCE), then the same serial; Intermediate then
# Final, each GAP then mAP.
T4_ROWS = ("parallel:rep", "parallel:rep+ce", "parallel:rep+pred+ce", "serial:rep_then_ce", "serial:rep+ce",
           "serial:rep+pred+ce")
T4 = {"intermediate": ((0.803, 0.803, 0.804, 0.804, 0.803, 0.806), (0.393, 0.396, 0.400, 0.395, 0.397, 0.405)),
      "final": ((0.803, 0.804, 0.806, 0.802, 0.803, 0.806), (0.392, 0.396, 0.404, 0.394, 0.399, 0.405))}

# Table 5 (NetVLAD): Skyline, Uniform, Student; k=10 then k=30, each mAP then GAP (the skyline's one pair
# spans both k).
T5 = {"skyline": (0.462, 0.823), "baseline:uniform": ((0.364, 0.773), (0.421, 0.803)),
      "serial:rep+pred+ce": ((0.383, 0.784), (0.436, 0.812))}
# Table 6 (NeXtVLAD, k=30): Skyline, Uniform, Student, each mAP, GAP and billions of FLOPs.
T6 = {"skyline": (0.464, 0.831, 1.337), "baseline:uniform": (0.424, 0.812, 0.134),
      "serial:rep+pred+ce": (0.439, 0.818, 0.134)}


def check(found, expected, where: str) -> None:
    assert found == pytest.approx(expected, abs=1e-9), f"{where}: published.py has {found}, the paper {expected}"


def test_table_1_every_row_at_every_k():
    hrnn = published.BY_K["hrnn"]
    assert list(hrnn) == list(T1_ROWS)
    for k, (gaps, maps) in T1.items():
        for row, gap, mean_ap in zip(T1_ROWS, gaps, maps):
            check(hrnn[row][k], (gap, mean_ap), f"Table 1, {row}, k={k}")
    check(published.SKYLINE["hrnn"], T1_SKYLINE, "Table 1, Teacher-Skyline")


def test_table_2_by_share_of_the_data():
    for row, (gaps, maps) in T2.items():
        for share, gap, mean_ap in zip(T2_SHARES, gaps, maps):
            check(published.BY_FRACTION[row][share], (gap, mean_ap), f"Table 2, {row}, {share:.0%}")
        check(published.BY_FRACTION[row][1.0], published.BY_K["hrnn"][row][30], f"Table 2, {row}, 100% (Table 1)")
    assert published.FRACTION_K == 30


def test_table_3_time_and_flops():
    whats, hours, flops = T3
    for what, hour, flop in zip(whats, hours, flops):
        check(published.COST["hrnn"][what], (flop, hour), f"Table 3, {what}")


def test_table_4_intermediate_against_final():
    for kind, (gaps, maps) in T4.items():
        for row, gap, mean_ap in zip(T4_ROWS, gaps, maps):
            check(published.INTERMEDIATE[row][kind], (gap, mean_ap), f"Table 4, {row}, {kind}")
    for row in T4_ROWS:  # its final column is Table 1's k=30
        check(published.INTERMEDIATE[row]["final"], published.BY_K["hrnn"][row][30], f"Table 4, {row}, final")
    assert published.INTERMEDIATE_K == 30


def test_table_5_netvlad_at_k_10_and_30():
    netvlad = published.BY_K["netvlad"]
    for row in ("baseline:uniform", "serial:rep+pred+ce"):
        for k, (mean_ap, gap) in zip((10, 30), T5[row]):
            check(netvlad[row][k], (gap, mean_ap), f"Table 5, {row}, k={k}")
    mean_ap, gap = T5["skyline"]
    check(published.SKYLINE["netvlad"], (gap, mean_ap), "Table 5, Skyline")
    # What the transposed reading hid: the student's edge over Uniform-k, 0.011 at k=10 and 0.009 at k=30.
    edges = [netvlad["serial:rep+pred+ce"][k][0] - netvlad["baseline:uniform"][k][0] for k in (10, 30)]
    assert edges == pytest.approx([0.011, 0.009], abs=1e-9)


def test_table_6_nextvlad_at_k_30():
    nextvlad = published.BY_K["nextvlad"]
    for row in ("baseline:uniform", "serial:rep+pred+ce"):
        mean_ap, gap, _ = T6[row]
        check(nextvlad[row][30], (gap, mean_ap), f"Table 6, {row}, k=30")
    mean_ap, gap, flops = T6["skyline"]
    check(published.SKYLINE["nextvlad"], (gap, mean_ap), "Table 6, Skyline")
    check(published.COST["nextvlad"]["all"][0], flops, "Table 6, Skyline FLOPs")
    check(published.COST["nextvlad"][30][0], T6["serial:rep+pred+ce"][2], "Table 6, k=30 FLOPs")


def test_the_paper_preset_runs_exactly_the_published_tables_cells():
    """`paper` is the paper's matrix: a cell for every published score (Tables 1, 2, 4, 5, 6) and its teacher's
    skyline, and nothing else; `paper_full` is the cross-product of its settings, ten times as many."""
    from orchestrator.experiment.matrix import expand
    from orchestrator.experiment.presets import load_preset
    from orchestrator.report.tables import SKYLINE, row_key

    wanted = {(family, row, k, 1.0) for family, rows in published.BY_K.items() for row, by_k in rows.items()
              for k in by_k}
    wanted |= {("hrnn", row, published.FRACTION_K, share) for row, by_share in published.BY_FRACTION.items()
               for share in by_share}
    wanted |= {("hrnn", row + "+intermediate", published.INTERMEDIATE_K, 1.0) for row in published.INTERMEDIATE}
    wanted |= {(family, SKYLINE, None, share) for family, _, _, share in wanted}
    _, cells = expand(load_preset("paper"), "d")
    found = [(c.family, row_key(c), c.k, c.data_fraction) for c in cells]
    assert len(found) == len(set(found)) == len(wanted) == 94 and set(found) == wanted
    teachers, full = expand(load_preset("paper_full"), "d")
    assert len(full) == 972 and len(teachers) == 12
