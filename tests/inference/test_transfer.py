"""Step inputs reach the device in one copy, each part starting 16-byte aligned."""

import torch

from inference.transfer import flat_to_device, lists_to_device, split_aligned


def test_parts_keep_their_values_and_start_aligned():
    for dtype in (torch.int32, torch.int64, torch.float32):
        lists = [[1, 2, 3], [], [4], list(range(7)), [5, 6]]
        parts = lists_to_device(lists, dtype, torch.device("cpu"))
        assert [p.tolist() for p in parts] == [[float(v) if dtype.is_floating_point else v for v in values]
                                               for values in lists]
        assert all(p.data_ptr() % 16 == 0 for p in parts if p.numel())


def test_a_receiving_rank_splits_the_flat_tensor_into_the_same_aligned_parts():
    lists = [[1, 2, 3], [4], [], list(range(9))]
    received = flat_to_device(lists, torch.int32, torch.device("cpu")).clone()  # another rank's buffer
    parts = split_aligned(received, [len(values) for values in lists])
    assert [p.tolist() for p in parts] == lists
    assert all(p.data_ptr() % 16 == 0 for p in parts if p.numel())
