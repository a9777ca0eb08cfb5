from cvkit.data.samplers import EpochSampler


def indices(sampler: EpochSampler) -> list[int]:
    return [item[0] if isinstance(item, tuple) else item for item in sampler]


def test_training_shards_are_disjoint_equal_and_cover_the_data() -> None:
    shards = [indices(EpochSampler(10, shuffle=True, seed=3, rank=r, world_size=4)) for r in range(4)]
    assert all(len(shard) == 3 for shard in shards)  # 10 padded to 12 by wrap-around
    flat = [i for shard in shards for i in shard]
    assert set(flat) == set(range(10))
    assert len(set(shards[0]) & set(shards[1])) == 0


def test_order_and_augmentation_seeds_depend_only_on_seed_and_epoch() -> None:
    first, again = EpochSampler(50, shuffle=True, seed=1), EpochSampler(50, shuffle=True, seed=1)
    again.set_epoch(0)
    assert list(first) == list(again)
    again.set_epoch(1)
    assert list(first) != list(again)
    assert all(isinstance(seed, int) for _, seed in first)


def test_evaluation_counts_every_sample_once_across_ranks() -> None:
    shards = [list(EpochSampler(7, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(7))
    assert [len(EpochSampler(7, shuffle=False, rank=r, world_size=3)) for r in range(3)] == [3, 2, 2]
