"""The generic Registry, and the model registry built on it."""
from __future__ import annotations

import pytest

from cnnkit.errors import CnnkitError
from cnnkit.models import MODELS, build_model, model_names
from cnnkit.models.registry import Registry, UnknownNameError


def test_register_get_and_list() -> None:
    things: Registry[int] = Registry("thing")
    things.register("b")(2)
    things.register("a")(1)
    assert things.get("a") == 1 and things.get("b") == 2
    assert things.names() == ["a", "b"]
    assert "a" in things and "c" not in things and len(things) == 2


def test_register_returns_the_object_so_it_works_as_a_decorator() -> None:
    things: Registry = Registry("thing")

    @things.register("f")
    def f() -> str:
        return "f"

    assert f() == "f" and things.get("f") is f


def test_duplicate_registration_raises_and_keeps_the_first() -> None:
    things: Registry[int] = Registry("thing")
    things.register("a")(1)
    with pytest.raises(ValueError, match="'a' is already registered"):
        things.register("a")(2)
    assert things.get("a") == 1


def test_unknown_name_is_a_cnnkit_error_listing_known_names() -> None:
    things: Registry[int] = Registry("thing")
    things.register("alpha")(1)
    things.register("beta")(2)
    with pytest.raises(CnnkitError) as info:
        things.get("gamma")
    assert isinstance(info.value, (UnknownNameError, KeyError))
    # plain text (KeyError would add quotes), one line, naming what exists
    assert str(info.value) == "unknown thing 'gamma'; known: alpha, beta"


def test_unknown_name_in_an_empty_registry() -> None:
    with pytest.raises(CnnkitError, match="known: none"):
        Registry("thing").get("x")


def test_registries_are_independent() -> None:
    one: Registry[int] = Registry("one")
    two: Registry[int] = Registry("two")
    one.register("x")(1)
    assert "x" not in two


def test_model_registry_refuses_a_second_builder_for_a_name() -> None:
    name = model_names()[0]
    before = MODELS.get(name)
    with pytest.raises(ValueError, match="already registered"):
        MODELS.register(name)(lambda **kw: None)
    assert MODELS.get(name) is before


def test_unknown_model_lists_the_registered_ones() -> None:
    with pytest.raises(CnnkitError) as info:
        build_model("no-such-net", num_classes=10, in_channels=1, image_size=28)
    message = str(info.value)
    assert "no-such-net" in message and "\n" not in message
    for name in model_names():
        assert name in message
