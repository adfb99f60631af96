"""Building subscriptions from what the user typed: the Electric URL and its query."""

from __future__ import annotations

import pytest

from replica.errors import ShapeDefinitionError
from replica.sources.electric import electric_endpoint
from replica.sources.specs import ElectricSpec


@pytest.mark.parametrize(
    ("given", "endpoint"),
    [
        ("http://localhost:3000", "http://localhost:3000/v1/shape"),
        ("http://localhost:3000/", "http://localhost:3000/v1/shape"),
        ("https://h/v1/shape", "https://h/v1/shape"),
        ("https://h/electric/v1/shape/?source_id=abc", "https://h/electric/v1/shape"),
    ],
)
def test_the_endpoint_of_an_electric_url(given: str, endpoint: str) -> None:
    assert electric_endpoint(given)[0] == endpoint


def test_query_parameters_of_the_url_go_with_every_request() -> None:
    shape = ElectricSpec("https://api.electric-sql.cloud/v1/shape?source_id=src_1", "items").shape(
        "s3cr3t"
    )
    params = shape.query_params()
    assert params["source_id"] == "src_1"
    assert params["secret"] == "s3cr3t"
    assert params["table"] == "items"
    assert "s3cr3t" not in repr(shape) and "s3cr3t" not in shape.key


@pytest.mark.parametrize("name", ["secret", "source_secret", "api_secret", "token"])
def test_a_secret_in_the_url_is_refused_with_where_to_put_it(name: str) -> None:
    with pytest.raises(ShapeDefinitionError, match="ELECTRIC_SECRET") as raised:
        ElectricSpec(f"https://h/v1/shape?source_id=x&{name}=hunter2hunter2", "items")
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("given", ["ftp://h", "localhost:3000", "http://"])
def test_not_an_http_url(given: str) -> None:
    with pytest.raises(ShapeDefinitionError, match="http"):
        electric_endpoint(given)


def test_a_protocol_parameter_in_the_url_is_refused() -> None:
    with pytest.raises(ShapeDefinitionError, match="offset"):
        ElectricSpec("http://h/v1/shape?offset=5_0", "items")
