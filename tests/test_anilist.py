"""/anilist: AniList's GraphQL queries for a series answered from the library's metadata (real Flask requests on
a real index); the GraphQL reader on its own."""

from __future__ import annotations

import pytest

from animeback.web import create_app
from animeback.web.graphql import GraphQLSyntaxError, parse_query, select

# The query PicImageSearch 3.12 sends after every trace.moe search (PicImageSearch.engines.tracemoe).
CLIENT_QUERY = """
query ($id: Int) {
  Media (id: $id, type: ANIME) {
    id idMal
    title { native romaji english }
    type format
    startDate { year month day }
    endDate { year month day }
    coverImage { large }
    synonyms
    isAdult
  }
}
"""


@pytest.fixture
def client(indexed):
    index, _ = indexed
    return create_app(index.settings, warm=False, index=index).test_client()


def test_a_clients_media_query_is_answered_from_series_json(client):
    response = client.post("/anilist", json={"query": CLIENT_QUERY, "variables": {"id": 101}})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert "errors" not in body
    media = body["data"]["Media"]
    assert media["id"] == 101 and media["title"] == {"native": "ショーワン", "romaji": "Show One", "english": None}
    assert media["type"] == "ANIME" and media["isAdult"] is False and media["synonyms"] == []
    assert media["idMal"] is None and media["format"] is None and media["coverImage"] == {"large": None}
    assert media["startDate"] == {"year": None, "month": None, "day": None}


def test_a_series_without_metadata_and_unknown_fields_give_null(client, indexed):
    index, _ = indexed
    other = index.catalogue.series_number("Other Show")
    query = "query Q($id: Int) { Media(id: $id) { id title { romaji userPreferred } nextAiringEpisode { episode } "
    query += "stats { scoreDistribution { score } } genres bannerImage } }"
    body = client.post("/anilist", json={"query": query, "variables": {"id": other}}).get_json()
    media = body["data"]["Media"]
    assert media["id"] == other and media["title"] == {"romaji": None, "userPreferred": None}
    assert media["nextAiringEpisode"] is None and media["stats"] is None and media["genres"] is None
    assert "errors" not in body


def test_page_search_aliases_fragments_and_get(client):
    query = """
    fragment Names on Media { title { romaji } }
    query {
      Page(perPage: 5) {
        pageInfo { total }
        media(search: "show one") { id ...Names ... on Media { isAdult } }
      }
      first: Media(id: 101) { ...Names }
    }"""
    body = client.post("/anilist", json={"query": query}).get_json()
    page = body["data"]["Page"]
    assert page["pageInfo"] == {"total": 1} and page["media"] == [
        {"id": 101, "title": {"romaji": "Show One"}, "isAdult": False}
    ]
    assert body["data"]["first"] == {"title": {"romaji": "Show One"}}
    got = client.get("/anilist", query_string={"query": "{ Media(id: 101) { id } }"}).get_json()
    assert got == {"data": {"Media": {"id": 101}}}


def test_unknown_ids_and_bad_queries(client):
    for unknown in (5, "101", True, 1.5, None):  # only a whole number names a series
        body = client.post("/anilist", json={"query": CLIENT_QUERY, "variables": {"id": unknown}}).get_json()
        assert body["data"] == {"Media": None} and body["errors"][0]["status"] == 404, unknown
    for bad, says in (
        ({"query": "{ Media(id: 1 { id } }"}, "Syntax Error"),
        ({"query": "mutation { SaveMediaListEntry(id: 1) { id } }"}, "only queries"),
        ({"query": "{ Media { id }", "variables": []}, "variables"),
        ({"nothing": 1}, "no GraphQL query"),
    ):
        response = client.post("/anilist", json=bad)
        assert response.status_code == 400 and says in response.get_json()["error"], (bad, response.get_json())
    response = client.post("/anilist", data=b"\xff not json", content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.get_json()["error"]


def test_the_reader_bounds_and_selects():
    fields = parse_query('{ a: Media(id: $x, tags: [1, "two", {k: true}]) { id } }', {"x": 7})
    assert fields[0].alias == "a" and fields[0].arguments == {"id": 7, "tags": [1, "two", {"k": True}]}
    assert select({"id": 1, "more": 2}, fields[0].selections) == {"id": 1}
    assert select([{"id": 1}, {"id": 2}], fields[0].selections) == [{"id": 1}, {"id": 2}]
    with pytest.raises(GraphQLSyntaxError, match="deeper"):
        parse_query("{" + "a {" * 20 + "b" + "}" * 21)
    with pytest.raises(GraphQLSyntaxError, match="longer"):
        parse_query("{ a }" + " " * 30_000)
    with pytest.raises(GraphQLSyntaxError, match="unexpected character"):
        parse_query("{ a % }")
    with pytest.raises(GraphQLSyntaxError, match="nests deeper"):
        parse_query("{ a(x: " + "[" * 5000 + "]" * 5000 + ") }")
    with pytest.raises(GraphQLSyntaxError, match="too long"):
        parse_query("{ a(x: " + "9" * 5000 + ") }")
