from collections import Counter

from cvkit.data.samplers import EpochSampler


def indices(sampler: EpochSampler) -> list[int]:
    return [item[0] if isinstance(item, tuple) else item for item in sampler]


def test_training_shards_are_equal_and_cover_the_data_overlapping_only_in_the_padding() -> None:
    # 10 samples on 4 ranks: the epoch's order is padded by wrap-around to 12 (its first 2 samples repeated at
    # the end), then rank r takes positions r, r + 4, r + 8. The shards are disjoint only where the size divides.
    shards = [indices(EpochSampler(10, shuffle=True, seed=3, rank=r, world_size=4)) for r in range(4)]
    assert [len(shard) for shard in shards] == [3] * 4
    flat = [i for shard in shards for i in shard]
    assert set(flat) == set(range(10))  # every index covered
    order = [shards[position % 4][position // 4] for position in range(12)]  # the padded order, rebuilt
    assert sorted(order[:10]) == list(range(10)) and order[10:] == order[:2]  # the padding: a wrap-around
    repeated = {i: n for i, n in Counter(flat).items() if n > 1}
    assert repeated == {order[0]: 2, order[1]: 2}  # the overlap of the shards is exactly the padding
    divisible = [indices(EpochSampler(12, shuffle=True, seed=3, rank=r, world_size=4)) for r in range(4)]
    assert sorted(i for shard in divisible for i in shard) == list(range(12))  # no padding: disjoint


def test_order_and_augmentation_seeds_depend_only_on_seed_and_epoch() -> None:
    first, again = EpochSampler(50, shuffle=True, seed=1), EpochSampler(50, shuffle=True, seed=1)
    again.set_epoch(0)
    assert list(first) == list(again)
    again.set_epoch(1)
    assert list(first) != list(again)
    assert list(first) != list(EpochSampler(50, shuffle=True, seed=2))
    assert all(isinstance(seed, int) for _, seed in first)


def test_evaluation_counts_every_sample_once_across_ranks() -> None:
    samplers = [EpochSampler(7, shuffle=False, rank=r, world_size=3) for r in range(3)]
    shards = [list(sampler) for sampler in samplers]
    assert sorted(i for shard in shards for i in shard) == list(range(7))  # each sample exactly once
    assert [len(sampler) for sampler in samplers] == [len(shard) for shard in shards] == [3, 2, 2]
