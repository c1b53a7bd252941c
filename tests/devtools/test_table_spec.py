"""TableSpec: what ``rxstore inspect --table`` reads, checked at once, and the store it makes."""

from __future__ import annotations

import pytest

from rxstore.devtools.table_spec import TableSpec
from rxstore.protocol.subsets import SubsetError
from rxstore.stores.table import TableStore


def test_a_name_is_the_whole_table_and_name_equals_json_a_subset() -> None:
    assert TableSpec.parse(" posts ") == TableSpec("posts")
    spec = TableSpec.parse('posts=[["likes", ">", 3]]', key="slug")
    assert spec == TableSpec("posts", [["likes", ">", 3]], "slug")
    assert spec.label == 'posts [["likes",">",3]]'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("=x", "name a table"),
        ("posts={x", "WHERE is not JSON"),
        ('posts={"a": {"b": 1}}', "a value must be"),
        ('posts=[["a", "~", 1]]', "posts"),
    ],
)
def test_a_bad_spec_is_refused_at_once_naming_itself(text: str, message: str) -> None:
    with pytest.raises(SubsetError, match=message) as refused:
        TableSpec.parse(text)
    assert str(refused.value).startswith(repr(text))


def test_the_store_follows_the_table_whole_or_as_a_subscription_keyed_as_told() -> None:
    whole = TableSpec("posts").store()
    assert isinstance(whole, TableStore) and whole.event == "post_update" and not whole.subscribed
    subset = TableSpec("posts", {"author": "ann"}, "slug").store("inspect-1")
    assert subset.event == "inspect-1" and subset.subscribed and subset.primary_key == "slug"
    assert subset.subset.topic == "posts" and subset.name == 'posts {"author":"ann"}'
