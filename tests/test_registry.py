from __future__ import annotations

import pytest

from covertml.errors import CovertMLError, UnknownNameError
from covertml.registry import Registry


def make() -> Registry[str]:
    reg: Registry[str] = Registry("widget")

    @reg.register("alpha", help="first", color="red")
    def _a(suffix: str = "") -> str:
        return "A" + suffix

    @reg.register("beta", aliases=("b",))
    def _b() -> str:
        """Second widget.

        More text.
        """
        return "B"

    return reg


def test_create_passes_arguments_and_resolves_aliases() -> None:
    reg = make()
    assert reg.create("alpha", suffix="!") == "A!"
    assert reg.create("b") == "B"
    assert reg.names() == ["alpha", "beta"]
    assert "b" in reg and "gamma" not in reg


def test_help_falls_back_to_docstring_first_line_and_keeps_meta() -> None:
    reg = make()
    assert reg.get("beta").help == "Second widget."
    assert reg.get("alpha").meta == {"color": "red"}


def test_unknown_name_lists_choices_and_suggests_close_match() -> None:
    reg = make()
    with pytest.raises(UnknownNameError) as info:
        reg.create("alpah")
    message = str(info.value)
    assert "unknown widget 'alpah'" in message
    assert "did you mean 'alpha'" in message
    assert "alpha, beta" in message
    assert "\n" not in message
    assert isinstance(info.value, CovertMLError)


def test_duplicate_registration_is_refused() -> None:
    reg = make()
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(lambda: "x")
