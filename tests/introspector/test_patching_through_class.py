"""Lifecycle hooks dispatched from the class (``InstancePatcher.hook_through_class``).

What a node relies on: a watched object runs the hook, every other object of the
class (another host's connections, a node that is not introspected) runs py-libp2p's
own method, no attribute is set on the watched object (its layout, and so CPython's
specialised attribute lookups on its class, stay as they were), and detaching puts
the class back as it was.
"""

from __future__ import annotations

import gc
import inspect
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import trio

from libp2p_introspection.introspector.patching import InstancePatcher


def _fresh_class() -> type:
    """A class of its own per test, so no test sees another's dispatcher."""

    class Conn:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def set_protocol(self, protocol_id: str) -> str:
            self.calls.append(f"own {protocol_id}")
            return f"set {protocol_id}"

        async def close(self) -> str:
            await trio.lowlevel.checkpoint()
            self.calls.append("own close")
            return "closed"

    return Conn


def _tagging(tag: str, log: list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def replacement(*args: Any, **kwargs: Any) -> Any:
            log.append(tag)
            return original(*args, **kwargs)

        return replacement

    return wrap


def test_only_the_watched_object_runs_the_hook_and_none_gains_an_attribute() -> None:
    cls = _fresh_class()
    own = vars(cls)["set_protocol"]
    watched, other = cls(), cls()
    before = set(vars(watched))
    log: list[str] = []
    patcher = InstancePatcher()
    patcher.hook_through_class(watched, "set_protocol", _tagging("hook", log))

    assert watched.set_protocol("/a") == "set /a"
    assert other.set_protocol("/b") == "set /b"
    assert log == ["hook"]
    assert watched.calls == ["own /a"] and other.calls == ["own /b"]
    assert set(vars(watched)) == before and "set_protocol" not in vars(other)
    assert patcher.is_patched(watched, "set_protocol")
    assert not patcher.is_patched(other, "set_protocol")

    patcher.restore_all()
    assert vars(cls)["set_protocol"] is own
    assert watched.set_protocol("/c") == "set /c" and log == ["hook"]


async def test_a_coroutine_method_stays_a_coroutine_method() -> None:
    cls = _fresh_class()
    watched, other = cls(), cls()
    log: list[str] = []
    patcher = InstancePatcher()

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        async def close() -> Any:
            log.append("before close")
            return await original()

        return close

    patcher.hook_through_class(watched, "close", wrap)
    assert inspect.iscoroutinefunction(cls.close)
    assert await watched.close() == "closed"
    assert await other.close() == "closed"
    assert log == ["before close"]
    assert watched.calls == other.calls == ["own close"]
    patcher.restore_all()


def test_hooks_stack_and_unpatch_returns_the_object_to_the_class_method() -> None:
    cls = _fresh_class()
    obj = cls()
    log: list[str] = []
    first, second = InstancePatcher(), InstancePatcher()
    first.hook_through_class(obj, "set_protocol", _tagging("first", log))
    first.hook_through_class(obj, "set_protocol", _tagging("first again", log))
    second.hook_through_class(obj, "set_protocol", _tagging("second", log))
    obj.set_protocol("/x")
    assert log == ["second", "first again", "first"]

    log.clear()
    second.unpatch(obj)  # back to what the first patcher left
    obj.set_protocol("/y")
    assert log == ["first again", "first"]

    log.clear()
    first.unpatch(obj)
    obj.set_protocol("/z")
    assert log == [] and obj.calls == ["own /x", "own /y", "own /z"]
    # unpatch leaves the dispatcher on the class (no churn per stream); restore_all
    # removes it once no live object uses it.
    assert "__wrapped__" in vars(vars(cls)["set_protocol"])
    first.restore_all()
    second.restore_all()
    assert "__wrapped__" not in vars(vars(cls)["set_protocol"])


def test_the_class_is_restored_only_when_no_live_object_of_any_patcher_uses_it() -> None:
    cls = _fresh_class()
    own = vars(cls)["set_protocol"]
    a, b = cls(), cls()
    log: list[str] = []
    first, second = InstancePatcher(), InstancePatcher()
    first.hook_through_class(a, "set_protocol", _tagging("a", log))
    second.hook_through_class(b, "set_protocol", _tagging("b", log))
    first.restore_all()
    assert vars(cls)["set_protocol"] is not own  # b still needs it
    a.set_protocol("/1")
    b.set_protocol("/2")
    assert log == ["b"]
    second.restore_all()
    assert vars(cls)["set_protocol"] is own


def test_a_dead_object_is_forgotten_and_its_successor_runs_the_class_method() -> None:
    cls = _fresh_class()
    log: list[str] = []
    patcher = InstancePatcher()
    dying = cls()

    def replacement(protocol_id: str) -> str:  # holds no reference to the object
        log.append("dying")
        return protocol_id

    patcher.hook_through_class(dying, "set_protocol", lambda _original: replacement)
    del dying
    gc.collect()
    assert len(patcher) == 0
    # New objects (one may reuse the dead one's id) are not watched.
    for _ in range(20):
        cls().set_protocol("/n")
    assert log == []
    patcher.restore_all()
    assert "__wrapped__" not in vars(vars(cls)["set_protocol"])


def test_a_patcher_dropped_without_restoring_keeps_nothing_alive() -> None:
    cls = _fresh_class()
    log: list[str] = []
    patcher = InstancePatcher()
    obj = cls()
    patcher.hook_through_class(obj, "set_protocol", _tagging("hook", log))  # holds obj
    survivor = cls()
    patcher.hook_through_class(survivor, "set_protocol", _tagging("survivor", log))
    del patcher
    gc.collect()
    survivor.set_protocol("/s")  # its patcher is gone, and with it the hook
    assert log == []
    ref = weakref.ref(obj)
    del obj
    gc.collect()
    assert ref() is None


def test_a_subclass_that_calls_super_runs_the_hook_once() -> None:
    base = _fresh_class()

    class Sub(base):  # type: ignore[misc, valid-type]
        def set_protocol(self, protocol_id: str) -> str:
            self.calls.append("sub")
            return super().set_protocol(protocol_id)

    log: list[str] = []
    patcher = InstancePatcher()
    sub, plain = Sub(), base()
    patcher.hook_through_class(sub, "set_protocol", _tagging("hook", log))
    patcher.hook_through_class(plain, "set_protocol", _tagging("plain hook", log))
    sub.set_protocol("/s")
    assert log == ["hook"] and sub.calls == ["sub", "own /s"]
    plain.set_protocol("/p")
    assert log == ["hook", "plain hook"]
    patcher.restore_all()
    assert "__wrapped__" not in vars(vars(Sub)["set_protocol"])
    assert "__wrapped__" not in vars(vars(base)["set_protocol"])


@pytest.mark.parametrize("shape", ["instance attribute", "staticmethod", "no weakref"])
def test_what_cannot_be_dispatched_from_the_class_is_patched_on_the_instance(shape: str) -> None:
    log: list[str] = []
    if shape == "instance attribute":
        cls = _fresh_class()
        obj = cls()
        obj.set_protocol = lambda protocol_id: f"instance {protocol_id}"  # type: ignore[method-assign]
        expected = "instance /i"
    elif shape == "staticmethod":

        class Static:
            set_protocol = staticmethod(lambda protocol_id: f"static {protocol_id}")

        cls, obj, expected = Static, Static(), "static /i"
    else:

        class NoWeakref:
            __slots__ = ("__dict__",)

            def set_protocol(self, protocol_id: str) -> str:
                return f"slots {protocol_id}"

        cls, obj, expected = NoWeakref, NoWeakref(), "slots /i"
    class_attribute = vars(cls)["set_protocol"]
    patcher = InstancePatcher()
    patcher.hook_through_class(obj, "set_protocol", _tagging("hook", log))
    assert obj.set_protocol("/i") == expected and log == ["hook"]
    assert vars(cls)["set_protocol"] is class_attribute  # the class was not touched
    patcher.restore_all()
    assert obj.set_protocol("/j") == expected.replace("/i", "/j") and log == ["hook"]


def test_a_wrap_that_raises_changes_nothing() -> None:
    cls = _fresh_class()
    obj = cls()
    patcher = InstancePatcher()

    def broken(_original: Callable[..., Any]) -> Callable[..., Any]:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        patcher.hook_through_class(obj, "set_protocol", broken)
    assert not patcher.is_patched(obj, "set_protocol")
    assert obj.set_protocol("/r") == "set /r"
    patcher.restore_all()
    assert "__wrapped__" not in vars(vars(cls)["set_protocol"])


def test_patchers_restored_in_either_order_put_the_class_back() -> None:
    cls = _fresh_class()
    own = vars(cls)["set_protocol"]
    obj = cls()
    log: list[str] = []
    first, second = InstancePatcher(), InstancePatcher()
    first.hook_through_class(obj, "set_protocol", _tagging("first", log))
    second.hook_through_class(obj, "set_protocol", _tagging("second", log))
    first.restore_all()  # the first one leaves: the second's wrapper stays
    obj.set_protocol("/1")
    assert log == ["second", "first"]
    second.restore_all()
    log.clear()
    obj.set_protocol("/2")
    assert log == [] and vars(cls)["set_protocol"] is own


def test_a_dispatcher_put_back_by_someone_else_is_still_recognised() -> None:
    cls = _fresh_class()
    own = vars(cls)["set_protocol"]
    obj = cls()
    log: list[str] = []
    patcher = InstancePatcher()
    patcher.hook_through_class(obj, "set_protocol", _tagging("hook", log))
    dispatcher = vars(cls)["set_protocol"]
    cls.set_protocol = lambda self, protocol_id: "mocked"  # a mock over the class
    patcher.restore_all()  # leaves the mock in place
    assert obj.set_protocol("/m") == "mocked"
    cls.set_protocol = dispatcher  # the mock ends: puts back what it found
    again = InstancePatcher()
    again.hook_through_class(obj, "set_protocol", _tagging("again", log))
    assert obj.set_protocol("/a") == "set /a" and log == ["again"]
    again.restore_all()
    assert vars(cls)["set_protocol"] is own
