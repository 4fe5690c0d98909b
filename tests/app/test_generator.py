"""Generated values: right length, only the preset's symbols, every symbol reachable."""

from __future__ import annotations

import pytest

from shared.generator import ALPHABETS, MAX_LENGTH, MIN_LENGTH, entropy_bits, generate_value

UNSAFE_IN_CONNECTION_STRINGS_OR_URLS = set(";='\" /?#%&+@:,\\")


@pytest.mark.parametrize("alphabet", list(ALPHABETS))
def test_values_use_only_the_preset_and_are_safe(alphabet: str) -> None:
    values = [generate_value(64, alphabet) for _ in range(50)]
    drawn = set("".join(values))
    assert all(len(v) == 64 for v in values)
    assert drawn <= set(ALPHABETS[alphabet])
    assert not drawn & UNSAFE_IN_CONNECTION_STRINGS_OR_URLS
    # 3,200 draws from at most 66 symbols: every symbol shows up (miss probability < 1e-20).
    assert drawn == set(ALPHABETS[alphabet])
    assert len(set(values)) == 50


def test_bounds_and_entropy() -> None:
    assert entropy_bits(MIN_LENGTH, "hex") == 64
    assert entropy_bits(32, "alphanumeric") > 190
    for length in (MIN_LENGTH - 1, MAX_LENGTH + 1):
        with pytest.raises(ValueError):
            generate_value(length)
    with pytest.raises(ValueError):
        generate_value(32, "emoji")
