import glob

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from workloads.data.format import read_info
from workloads.data.batch import FrameSelection
from workloads.data.reader import VideoShards
from workloads.data.synth import SynthConfig, generate, main as synth_main, make_video, make_world
from workloads.errors import DataError
from workloads.metrics import gap


def test_same_seed_same_bytes_whatever_the_sharding(tmp_path):
    config = SynthConfig(num_classes=20, min_frames=10, max_frames=60)
    generate(str(tmp_path / "a"), 25, seed=3, config=config, videos_per_shard=25, workers=1)
    generate(str(tmp_path / "b"), 25, seed=3, config=config, videos_per_shard=7, workers=2)
    a = pq.read_table(str(tmp_path / "a")).to_pylist()
    b = pq.read_table(sorted(glob.glob(str(tmp_path / "b" / "*.parquet")))).to_pylist()
    assert a == b
    generate(str(tmp_path / "c"), 25, seed=4, config=config, videos_per_shard=25)
    assert pq.read_table(str(tmp_path / "c")).column("rgb").to_pylist() != [row["rgb"] for row in a]


def test_splits_share_a_world_but_no_video():
    config = SynthConfig(num_classes=20)
    world = make_world(config, seed=1)
    assert np.array_equal(world.rgb_prototypes, make_world(config, seed=1).rgb_prototypes)
    train = make_video(world, config, 1, "train", 0)
    validate = make_video(world, config, 1, "validate", 0)
    assert train.id != validate.id and not np.array_equal(train.rgb[:10], validate.rgb[:10])


def test_statistics_look_like_youtube8m(tmp_path):
    config = SynthConfig(num_classes=100)
    world = make_world(config, seed=0)
    videos = [make_video(world, config, 0, "train", i) for i in range(600)]
    lengths = np.array([v.num_frames for v in videos])
    labels_per_video = np.array([v.labels.size for v in videos])
    counts = np.bincount(np.concatenate([v.labels for v in videos]), minlength=100)
    assert lengths.min() >= 120 and lengths.max() == 300 and np.mean(lengths == 300) > 0.25
    assert 2.5 < labels_per_video.mean() < 3.5 and labels_per_video.min() >= 1
    # long tail: the 10 most frequent classes carry far more labels than the 50 rarest
    ranked = np.sort(counts)[::-1]
    assert ranked[:10].sum() > 2 * ranked[50:].sum()
    for v in videos[:5]:
        assert v.rgb.dtype == np.uint8 and v.rgb.shape == (v.num_frames, 1024) and v.audio.shape == (v.num_frames, 128)


def test_cli_writes_documented_shards(tmp_path, capsys):
    assert synth_main(["--out", str(tmp_path), "--videos", "30", "--seed", "5", "--classes", "12",
                       "--videos-per-shard", "16", "--workers", "1", "--split", "validate"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["validate-00000.parquet", "validate-00001.parquet"]
    info = read_info(str(tmp_path / "validate-00000.parquet"))
    assert info.num_classes == 12 and info.source == "synthetic" and info.details["seed"] == 5
    assert "wrote 30 validate videos in 2 shard(s)" in capsys.readouterr().out
    assert synth_main(["--out", str(tmp_path), "--videos", "3", "--min-frames", "50", "--max-frames", "10"]) == 2


def test_bad_config_is_rejected():
    with pytest.raises(DataError, match="min_frames <= max_frames"):
        SynthConfig(min_frames=10, max_frames=5).validate()


def _bag_of_frames_gap(train: str, validate: str, selection: FrameSelection | None) -> float:
    """GAP of a linear classifier on the mean of the selected (L2-normalised) frames."""

    def features(source):
        xs, ys = [], []
        for batch in VideoShards(source, batch_size=256, selection=selection):
            frames = torch.nn.functional.normalize(batch.frames, dim=-1) * batch.mask.unsqueeze(-1)
            xs.append(frames.sum(1) / batch.mask.sum(1, keepdim=True))
            ys.append(batch.labels)
        return torch.cat(xs), torch.cat(ys)

    torch.manual_seed(0)
    x_train, y_train = features(train)
    x_val, y_val = features(validate)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    model = torch.nn.Linear(x_train.shape[1], y_train.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(250):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model((x_train - mean) / std), y_train)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        scores = torch.sigmoid(model((x_val - mean) / std)).numpy()
    return gap(scores, y_val.numpy())


@pytest.mark.slow
def test_which_frames_a_model_sees_matters(tmp_path):
    """The generator's purpose: all frames > Uniform-k > First-k, Middle-k, Last-k."""
    torch.set_num_threads(2)
    config = SynthConfig(num_classes=30)
    generate(str(tmp_path / "train"), 1500, seed=11, split="train", config=config, workers=2, videos_per_shard=750)
    generate(str(tmp_path / "validate"), 600, seed=11, split="validate", config=config, workers=2)
    score = {
        name: _bag_of_frames_gap(str(tmp_path / "train"), str(tmp_path / "validate"), selection)
        for name, selection in [
            ("all", None),
            ("uniform", FrameSelection("uniform", k=30)),
            ("first", FrameSelection("first", k=30)),
            ("middle", FrameSelection("middle", k=30)),
            ("last", FrameSelection("last", k=30)),
        ]
    }
    assert score["all"] > score["uniform"] + 0.05, score
    for contiguous in ("first", "middle", "last"):
        assert score["uniform"] > score[contiguous] + 0.05, score
