"""Step inputs reach the device in one copy, each part starting 16-byte aligned."""

import torch

from inference.transfer import lists_to_device


def test_parts_keep_their_values_and_start_aligned():
    for dtype in (torch.int32, torch.int64, torch.float32):
        lists = [[1, 2, 3], [], [4], list(range(7)), [5, 6]]
        parts = lists_to_device(lists, dtype, torch.device("cpu"))
        assert [p.tolist() for p in parts] == [[float(v) if dtype.is_floating_point else v for v in values]
                                               for values in lists]
        assert all(p.data_ptr() % 16 == 0 for p in parts if p.numel())
