"""Random flips and 90-degree rotations: each image gets one of the 8 elements of D4, exactly."""

from __future__ import annotations

import pytest
import torch

from neurocorr.models.agfusion.dihedral import RandomDihedral, apply_dihedral, dihedral_index, random_dihedral


def reference(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.rot90(x.transpose(-2, -1) if k >= 4 else x, k % 4, dims=(-2, -1))


def test_each_element_is_the_flip_or_rotation_it_names() -> None:
    x = torch.rand(8, 3, 5, 5)
    out = apply_dihedral(x, torch.arange(8))
    for k in range(8):
        assert torch.equal(out[k], reference(x[k], k))
    # the 8 elements are distinct (a group of 8), and element 0 is the identity
    assert len({tuple(r.tolist()) for r in dihedral_index(4)}) == 8
    assert torch.equal(dihedral_index(3)[0], torch.arange(9))
    # the flips: transpose then rot90 by 1 flips the rows (k = 5), by 3 the columns (k = 7)
    assert torch.equal(out[5], x[5].flip(-2)) and torch.equal(out[7], x[7].flip(-1))


def test_random_draws_cover_the_group_and_follow_the_seed() -> None:
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(400, 1, 4, 4)
    out = random_dihedral(x, torch.Generator().manual_seed(0))
    variants = {tuple(o.flatten().tolist()) for o in out}
    assert len(variants) == 8
    again = random_dihedral(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    torch.manual_seed(3)
    module_out = RandomDihedral()(x)
    torch.manual_seed(3)
    assert torch.equal(module_out, random_dihedral(x))  # module equals function


def test_gradients_flow_back_to_the_moved_pixels() -> None:
    x = torch.rand(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: apply_dihedral(t, torch.tensor([3, 6])), (x,))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="square"):
        apply_dihedral(torch.rand(2, 3, 4, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="one element per image"):
        apply_dihedral(torch.rand(2, 3, 4, 4), torch.zeros(3, dtype=torch.long))
