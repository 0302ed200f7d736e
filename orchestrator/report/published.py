"""The paper's published numbers (Bhardwaj et al., CVPR 2019; YouTube-8M's 2017 frame-level
release, 4,716 classes, its official validation split as test), keyed the way the report keys its rows, to print beside a grid's own.

Row keys: "skyline", "baseline:<selection>", "serial:<variant>", "parallel:<variant>", with `+intermediate`
appended for Table 4's intermediate matching. Values are (GAP, mAP).

Read from the paper's text. One caveat: in Table 1 the text layer gives the baselines' k=6 and k=10 GAP of
each row as an unordered pair; the smaller is taken as k=6, since every other column of every row grows
with k.
"""

from __future__ import annotations

Score = tuple[float, float]  # (GAP, mAP)

# The paper's Table 1 rows in our names. The paper's serial "Lrep" is variant (a): Lrep, then LCE.
_T1_KS = (6, 10, 15, 20, 30)
_T1 = {
    "baseline:uniform": ((0.715, 0.266), (0.759, 0.324), (0.777, 0.350), (0.785, 0.363), (0.795, 0.378)),
    "baseline:random": ((0.679, 0.246), (0.681, 0.254), (0.717, 0.268), (0.763, 0.329), (0.774, 0.339)),
    "baseline:first": ((0.478, 0.133), (0.539, 0.163), (0.595, 0.199), (0.632, 0.223), (0.676, 0.258)),
    "baseline:middle": ((0.577, 0.178), (0.600, 0.198), (0.620, 0.214), (0.638, 0.229), (0.665, 0.250)),
    "baseline:last": ((0.255, 0.062), (0.267, 0.067), (0.282, 0.077), (0.294, 0.083), (0.317, 0.094)),
    "baseline:first_middle_last": ((0.640, 0.215), (0.671, 0.242), (0.680, 0.249), (0.698, 0.268), (0.721, 0.287)),
    "parallel:rep": ((0.724, 0.280), (0.762, 0.331), (0.785, 0.365), (0.794, 0.380), (0.803, 0.392)),
    "parallel:rep+ce": ((0.726, 0.285), (0.766, 0.334), (0.785, 0.362), (0.795, 0.381), (0.804, 0.396)),
    "parallel:rep+pred+ce": ((0.729, 0.292), (0.770, 0.337), (0.789, 0.371), (0.796, 0.388), (0.806, 0.404)),
    "serial:rep_then_ce": ((0.727, 0.288), (0.768, 0.339), (0.786, 0.365), (0.795, 0.381), (0.802, 0.394)),
    "serial:pred": ((0.722, 0.287), (0.766, 0.341), (0.784, 0.367), (0.793, 0.383), (0.798, 0.390)),
    "serial:rep+ce": ((0.728, 0.291), (0.769, 0.341), (0.786, 0.368), (0.794, 0.383), (0.803, 0.399)),
    "serial:pred+ce": ((0.724, 0.289), (0.763, 0.341), (0.785, 0.369), (0.795, 0.386), (0.799, 0.391)),
    "serial:rep+pred+ce": ((0.731, 0.297), (0.771, 0.349), (0.789, 0.375), (0.798, 0.390), (0.806, 0.405)),
}

# Table 1 (H-RNN), Table 5 (NetVLAD, k = 10 and 30), Table 6 (NeXtVLAD, k = 30): row -> {k: score}.
BY_K: dict[str, dict[str, dict[int, Score]]] = {
    "hrnn": {row: dict(zip(_T1_KS, scores)) for row, scores in _T1.items()},
    # Table 5 prints each row's (mAP, GAP) at k=10, then at k=30.
    "netvlad": {"baseline:uniform": {10: (0.773, 0.364), 30: (0.803, 0.421)},
                "serial:rep+pred+ce": {10: (0.784, 0.383), 30: (0.812, 0.436)}},
    "nextvlad": {"baseline:uniform": {30: (0.812, 0.424)}, "serial:rep+pred+ce": {30: (0.818, 0.439)}},
}
SKYLINE: dict[str, Score] = {"hrnn": (0.811, 0.414), "netvlad": (0.823, 0.462), "nextvlad": (0.831, 0.464)}
TABLE_OF_FAMILY = {"hrnn": "Table 1", "netvlad": "Table 5", "nextvlad": "Table 6"}

# Table 2 (H-RNN, k = 30): share of the training data -> score; all of it is Table 1's k = 30 column.
BY_FRACTION: dict[str, dict[float, Score]] = {
    "serial:rep+pred+ce": {0.1: (0.774, 0.345), 0.25: (0.788, 0.369), 0.5: (0.796, 0.373), 1.0: (0.806, 0.405)},
    "baseline:uniform": {0.1: (0.718, 0.220), 0.25: (0.756, 0.301), 0.5: (0.776, 0.349), 1.0: (0.795, 0.378)},
}
FRACTION_K = 30

# Table 3 (H-RNN; Table 6 gives NeXtVLAD's FLOPs): "all" or k -> (billions of FLOPs as published, hours to
# evaluate the validation split on Tesla K80s). The published FLOPs are multiply-adds of the per-frame
# work (~16.9 M a frame), so they compare with our per-frame column.
COST: dict[str, dict[object, tuple[float, float | None]]] = {
    "hrnn": {"all": (5.058, 13.00), 10: (0.167, 7.61), 20: (0.268, 8.20), 30: (0.520, 9.11)},
    "nextvlad": {"all": (1.337, None), 30: (0.134, None)},
}

# Table 4 (H-RNN, k = 30): final vs intermediate representation matching.
INTERMEDIATE_K = 30
INTERMEDIATE: dict[str, dict[str, Score]] = {
    "parallel:rep": {"final": (0.803, 0.392), "intermediate": (0.803, 0.393)},
    "parallel:rep+ce": {"final": (0.804, 0.396), "intermediate": (0.803, 0.396)},
    "parallel:rep+pred+ce": {"final": (0.806, 0.404), "intermediate": (0.804, 0.400)},
    "serial:rep_then_ce": {"final": (0.802, 0.394), "intermediate": (0.804, 0.395)},
    "serial:rep+ce": {"final": (0.803, 0.399), "intermediate": (0.803, 0.397)},
    "serial:rep+pred+ce": {"final": (0.806, 0.405), "intermediate": (0.806, 0.405)},
}
