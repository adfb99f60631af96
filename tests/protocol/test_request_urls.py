"""The URL of each request: every parameter comes back as sent, in sorted order, whatever
characters a server puts in a handle or a cursor."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from replica.protocol import ShapeDefinition, ShapeStream
from replica.protocol.http1 import Http1Client


def stream() -> ShapeStream:
    shape = ShapeDefinition(
        url="http://127.0.0.1:3000/v1/shape",
        table="items",
        where="name = $1 AND note <> 'a&b'",
        where_params=["x y+z"],
    )
    return ShapeStream(shape, Http1Client())


STREAM = stream()


@settings(deadline=None)  # a loaded machine is no failure
@given(handle=st.text(), cursor=st.text(), offset=st.sampled_from(["-1", "0_0", "12_3"]))
def test_parameters_round_trip_in_sorted_order(handle: str, cursor: str, offset: str) -> None:
    url = STREAM._request_url({"offset": offset, "handle": handle, "cursor": cursor})
    pairs = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    assert [name for name, _ in pairs] == sorted(name for name, _ in pairs)
    assert dict(pairs) == {
        "log": "full",
        "table": "items",
        "where": "name = $1 AND note <> 'a&b'",
        "params[1]": "x y+z",
        "offset": offset,
        "handle": handle,
        "cursor": cursor,
    }
    assert url.startswith("http://127.0.0.1:3000/v1/shape?")


def test_the_url_matches_httpx_encoding() -> None:
    position = {"offset": "5_0", "handle": "h-1", "live": "true", "cursor": ""}
    url = stream()._request_url(position)
    params = {"log": "full", **stream().shape.query_params(), **position}
    expected = httpx.URL("http://127.0.0.1:3000/v1/shape", params=sorted(params.items()))
    assert url == str(expected)
