"""TableState is a read-only Mapping of key -> record, with NgRx's entity-adapter views (issue 13, item 6)."""

from __future__ import annotations

from collections.abc import ItemsView, KeysView, Mapping, ValuesView

import attrs
import immutables
import pytest

from rxstore import TableState, TableStore
from rxstore.testing import change, snapshot


@attrs.frozen
class Post:
    id: str
    title: str
    likes: int = 0


class PostStore(TableStore[Post]):
    table = "posts"
    record_type = Post


def three_posts() -> TableState[Post]:
    posts = PostStore()
    posts.apply(
        [
            snapshot("posts", 4, [{"id": "p2", "title": "two", "likes": 5}, {"id": "p3", "title": "three"}]),
            change("posts", 5, "INSERT", {"id": "p1", "title": "one", "likes": 9}),
        ]
    )
    return posts.value


def test_a_table_state_is_a_mapping_and_iterating_it_yields_the_keys_as_a_dict_does() -> None:
    """``isinstance(state, Mapping)``, ``list(state)`` gives keys, ``dict(state)`` gives key -> record."""
    state = three_posts()
    assert isinstance(state, Mapping)
    assert sorted(state) == ["p1", "p2", "p3"]
    assert dict(state) == {"p1": Post("p1", "one", 9), "p2": Post("p2", "two", 5), "p3": Post("p3", "three")}
    assert dict(state) == state.to_dict()
    assert {**state}["p2"].title == "two"


def test_keys_values_and_items_are_the_mapping_views_of_the_rows() -> None:
    """The three views are the ``collections.abc`` views (set operations on keys and items work)."""
    state = three_posts()
    keys, values, items = state.keys(), state.values(), state.items()
    assert isinstance(keys, KeysView) and isinstance(values, ValuesView) and isinstance(items, ItemsView)
    assert len(keys) == len(values) == len(items) == 3
    assert keys - {"p1"} == {"p2", "p3"} and "p3" in keys
    assert sorted(p.title for p in values) == ["one", "three", "two"] and Post("p1", "one", 9) in values
    assert ("p2", Post("p2", "two", 5)) in items and ("p2", Post("p2", "other")) not in items
    assert dict(items) == dict(state) and sorted(items) == sorted(state.to_dict().items())


def test_get_contains_getitem_and_len_are_unchanged() -> None:
    """The lookups that worked before keep working."""
    state = three_posts()
    assert len(state) == 3 and "p1" in state and "p9" not in state
    assert state["p1"].likes == 9 and state.get("p9") is None
    assert state.get("p9", Post("d", "d")) == Post("d", "d")
    with pytest.raises(KeyError):
        state["p9"]


def test_ids_entities_and_total_are_ngrx_entity_adapter_views() -> None:
    """``ids()`` in key order (or by record, as ``ordered``), ``entities`` the map, ``total`` the count."""
    state = three_posts()

    def by_likes(post: Post) -> int:
        return post.likes

    assert state.ids() == ("p1", "p2", "p3")
    assert state.ids(reverse=True) == ("p3", "p2", "p1")
    assert state.ids(by_likes) == ("p3", "p2", "p1")
    assert state.ids(by_likes, reverse=True) == tuple(p.id for p in state.ordered(by_likes, reverse=True))
    assert state.ids(by_likes) is state.ids(by_likes)  # once per state and key
    assert state.entities is state.rows and state.entities["p2"].title == "two"
    assert state.total == len(state) == 3
    assert TableState().total == 0 and TableState().ids() == () and list(TableState()) == []


def test_equality_is_rows_and_seq_and_a_state_stays_hashable() -> None:
    """Two states are equal when rows and ``seq`` are; a state is not equal to a dict of its rows."""
    rows = immutables.Map({"p1": Post("p1", "one")})
    assert TableState(rows, 3) == TableState(rows, 3) and TableState(rows, 3) != TableState(rows, 4)
    assert TableState(rows, 3) != dict(rows)
    assert hash(TableState(rows, 3)) == hash(TableState(rows, 3))
