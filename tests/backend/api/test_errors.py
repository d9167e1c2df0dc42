"""Every refusal is a 4xx with a sentence; an unhandled error is a clean 500 that leaves the
connection usable; 405 names every method the address accepts."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from tests.backend.api.live import live


def test_an_unhandled_error_is_a_clean_500_and_the_connection_lives_on() -> None:
    app = create_app()

    def boom() -> None:
        raise RuntimeError("secret internals /srv/conceptlens")

    app.add_api_route("/boom", boom)
    with live(app) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/boom")
        crashed = conn.getresponse()
        body = crashed.read()
        assert crashed.status == 500 and crashed.getheader("content-type") == "application/json"
        assert set(json.loads(body)) == {"detail"} and b"secret" not in body
        conn.request("GET", "/healthz")  # the same keep-alive connection
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read()) == {"status": "ok"}
        conn.close()


@pytest.mark.parametrize(
    "query,words",
    [
        ({"contains": "-1"}, "contains must be a player in 0–5; -1 is not"),
        ({"contains": "64"}, "64 is not"),
        ({"contains": "1,4000000000"}, "4000000000 is not"),
        ({"contains": "1,x"}, "comma"),
        ({"order": 99}, "order must be in 0–6"),
    ],
)
def test_interaction_filters_are_checked_against_the_players(
    finished: dict[str, Any], query: dict[str, Any], words: str
) -> None:
    client: TestClient = finished["client"]
    for base in (finished["base"], finished["shared"]):
        response = client.get(f"{base}/interactions", params=query)
        assert response.status_code == 400, response.text
        assert words in response.json()["detail"]


@pytest.mark.parametrize(
    "path,query",
    [
        ("pair", {"i": 0, "j": 6}),
        ("pair", {"i": -1, "j": 2}),
        ("pair", {"i": 10**30, "j": 2}),
        ("shapley", {"i": -1}),
        ("shapley", {"i": 6}),
        ("figures/shapley", {"i": 2**70}),
    ],
)
def test_player_parameters_are_checked(
    finished: dict[str, Any], path: str, query: dict[str, Any]
) -> None:
    client: TestClient = finished["client"]
    for base in (finished["base"], finished["shared"]):
        response = client.get(f"{base}/{path}", params=query)
        assert response.status_code == 400, response.text
        assert "0–5" in response.json()["detail"]


def test_validation_errors_read_as_sentences(client: TestClient) -> None:
    response = client.post("/api/components", json={"model_id": "m", "epochs": "many"})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"] == "dataset_id is required. layer is required. " + (
        "epochs must be a whole number."
    )
    assert [e["loc"] for e in body["errors"]] == [
        ["body", "dataset_id"], ["body", "layer"], ["body", "epochs"],
    ]  # fmt: skip
    orders = client.post("/api/components", json={"orders": [1, "x"]}).json()["detail"]
    assert "orders[1] must be a whole number." in orders
    assert client.post(
        "/api/analyses", content=b"{", headers={"content-type": "application/json"}
    ).json()["detail"] == ("The request body is not valid JSON.")


def test_405_lists_every_method_of_the_address(client: TestClient) -> None:
    response = client.delete("/api/models")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert "DELETE" in response.json()["detail"]
    one = client.put("/api/models/abc")
    assert one.status_code == 405 and one.headers["allow"] == "DELETE, GET"
    static = client.post("/static/style.css")
    assert static.status_code == 405 and static.headers["allow"] == "GET, HEAD"
