#!/usr/bin/env python3
"""End-to-end check of capture against a real Apache Superset 6.1 (Python standard library only).

With `replicator setup` applied to the Superset's metadata database and `replicator capture`
publishing it to a topic, this drives Superset through its public REST API, the way its web UI
does, and then reads the topic with `replicator tail` to check that every change was published:

   1. log in (JWT + CSRF token with its session cookie)
   2. create a database connection to the examples database (with a password in its URI)
   3. create a dataset on its table `public.sales`
   4. create a dashboard
   5. create a chart on the dataset, placed on the dashboard
   6. save the dashboard layout (PUT json_metadata with `positions`, as the UI's Save does)
   7. save a native filter on the dataset, scoped to the chart (PUT /dashboard/<id>/filters)
   8. edit each: rename the dashboard, change the chart's params, the dataset's description,
      the database's name
   9. create, update and delete the dashboard's embedded config
  10. create a custom tag on the dashboard, tag the chart with it, edit it, untag the dashboard,
      delete the tag
  11. delete the chart, the dashboard, the dataset and the database

Every REST call must answer 2xx: that proves Superset keeps working with capture installed. After
each step the script records which entity (uuid) it touched and what must be published for it;
at the end every expectation must be met by a change record on the topic, in step order: the right
table and entity uuid, the expected field values, `$exists` false for deletes, region-local ids
published as uuids (also inside the dashboard's position_json and json_metadata), and no secret
(the connection's password and URI are never published).

Exit status: 0 when every call and every check passed, 1 otherwise, 2 on bad usage.
The run's project entry point is `dev/e2e superset-capture` (see docs/development.md).
"""
from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SECRET_FIELDS = ("sqlalchemy_uri", "password", "encrypted_extra", "server_cert")


# ------------------------------------------------------------------------------------ REST ---


class RestError(Exception):
    pass


class Superset:
    """A logged-in REST session: bearer token, CSRF token and the session cookie it belongs to."""

    def __init__(self, base: str, verbose: bool) -> None:
        self.base = base.rstrip("/")
        self.verbose = verbose
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.token: str | None = None
        self.csrf: str | None = None
        self.calls: list[str] = []  # "METHOD path -> status" of the current step

    def request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.csrf and method not in ("GET", "HEAD"):
            headers["X-CSRFToken"] = self.csrf
            headers["Referer"] = self.base + "/"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=120) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        except (urllib.error.URLError, OSError) as err:
            raise RestError(f"{method} {path}: no answer ({err})") from err
        shown = path.split("?")[0]
        self.calls.append(f"{method} {shown} -> {status}")
        if self.verbose:
            print(f"    {method} {path} -> {status}", file=sys.stderr)
        if not 200 <= status < 300:
            raise RestError(f"{method} {path} answered HTTP {status}: {payload[:1500]!r}")
        return json.loads(payload) if payload else None

    def login(self, user: str, password: str) -> None:
        res = self.request(
            "POST",
            "/api/v1/security/login",
            {"username": user, "password": password, "provider": "db", "refresh": True},
        )
        self.token = res["access_token"]
        self.csrf = self.request("GET", "/api/v1/security/csrf_token/")["result"]


def rison_filter(column: str, value: str) -> str:
    return urllib.parse.quote(f"(filters:!((col:{column},opr:eq,value:'{value}')))")


# ------------------------------------------------------------------------ expectations ---


@dataclass
class Check:
    """One field's expected value: `test(value)` must hold; `what` says what was expected."""

    what: str
    test: Callable[[Any], bool]


def eq(value: Any) -> Check:
    return Check(json.dumps(value), lambda v: v == value)


def is_uuid() -> Check:
    return Check("a uuid", lambda v: isinstance(v, str) and bool(UUID_RE.match(v)))


def json_text(what: str, test: Callable[[Any], bool]) -> Check:
    """A text column holding JSON: parsed, then tested."""

    def run(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            return bool(test(json.loads(v)))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return False

    return Check(what, run)


def not_null() -> Check:
    return Check("not null", lambda v: v is not None)


@dataclass
class Expect:
    """A change record that must be on the topic.

    The entity is given (`entity`) or taken from an earlier expectation's match (`entity_of`); when
    neither, the first record of `table` whose fields match is taken, and `bind` names it for later
    expectations (rows with no uuid of their own: tags, tagged objects, association rows)."""

    table: str
    what: str
    fields: dict[str, Check] = field(default_factory=dict)
    entity: str | None = None
    entity_of: str | None = None
    bind: str | None = None
    absent: tuple[str, ...] = ()
    never_null: tuple[str, ...] = ()  # when published, these fields must not be null
    # filled in by the matcher
    found: dict | None = None


@dataclass
class Step:
    name: str
    calls: list[str] = field(default_factory=list)
    expects: list[Expect] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def created(table: str, what: str, entity: str | None = None, **fields: Check) -> Expect:
    return Expect(table, what, {"$exists": eq(True), **fields}, entity=entity)


def deleted(table: str, what: str, entity: str | None = None, entity_of: str | None = None) -> Expect:
    return Expect(table, what, {"$exists": eq(False)}, entity=entity, entity_of=entity_of)


# ------------------------------------------------------------------------ the scenario ---


def chart_params(dataset_id: int, row_limit: int) -> dict[str, Any]:
    return {
        "datasource": f"{dataset_id}__table",
        "viz_type": "table",
        "query_mode": "aggregate",
        "groupby": ["region"],
        "metrics": [{
            "expressionType": "SIMPLE",
            "column": {"column_name": "amount"},
            "aggregate": "SUM",
            "label": "SUM(amount)",
        }],
        "adhoc_filters": [],
        "row_limit": row_limit,
        "order_desc": True,
    }


def query_context(dataset_id: int, params: dict[str, Any]) -> dict[str, Any]:
    return {
        "datasource": {"id": dataset_id, "type": "table"},
        "force": False,
        "queries": [{
            "columns": ["region"],
            "metrics": params["metrics"],
            "filters": [],
            "orderby": [[params["metrics"][0], False]],
            "row_limit": params["row_limit"],
        }],
        "form_data": params,
        "result_format": "json",
        "result_type": "full",
    }


def layout(title: str, chart_id: int, chart_name: str) -> dict[str, Any]:
    """A v2 layout as the dashboard editor builds it: chart nodes carry the local chart id only
    (Superset adds meta.uuid itself when it saves `positions`)."""
    return {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": ["ROW-e2e"], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": title}},
        "ROW-e2e": {
            "type": "ROW", "id": "ROW-e2e", "children": ["CHART-e2e"],
            "parents": ["ROOT_ID", "GRID_ID"], "meta": {"background": "BACKGROUND_TRANSPARENT"},
        },
        "CHART-e2e": {
            "type": "CHART", "id": "CHART-e2e", "children": [],
            "parents": ["ROOT_ID", "GRID_ID", "ROW-e2e"],
            "meta": {"width": 6, "height": 50, "chartId": chart_id, "sliceName": chart_name},
        },
    }


def native_filter(dataset_id: int, chart_id: int) -> dict[str, Any]:
    return {
        "id": "NATIVE_FILTER-e2e-region",
        "name": "Region",
        "filterType": "filter_select",
        "type": "NATIVE_FILTER",
        "targets": [{"datasetId": dataset_id, "column": {"name": "region"}}],
        "controlValues": {"multiSelect": True, "enableEmptyFilter": False},
        "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
        "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
        "chartsInScope": [chart_id],
        "tabsInScope": [],
        "description": "",
    }


def chart_nodes(position: dict) -> list[dict]:
    return [n for n in position.values() if isinstance(n, dict) and n.get("type") == "CHART"]


class Scenario:
    def __init__(self, api: Superset, args: argparse.Namespace) -> None:
        self.api = api
        self.args = args
        self.sfx = args.suffix
        self.steps: list[Step] = []
        self.ids: dict[str, Any] = {}  # local ids and uuids, for the report

    def step(self, name: str, run: Callable[[Step], None]) -> bool:
        st = Step(name)
        self.steps.append(st)
        self.api.calls = []
        print(f"[e2e] step {len(self.steps):2}: {name}", flush=True)
        try:
            run(st)
        except (RestError, KeyError, IndexError, TypeError, ValueError) as err:
            st.error = f"{type(err).__name__}: {err}"
            print(f"[e2e]   FAILED: {st.error}", flush=True)
        st.calls = list(self.api.calls)
        return st.error is None

    def run(self) -> None:
        a, s = self.api, self
        sfx = self.sfx

        def login(st: Step) -> None:
            a.login(s.args.user, s.args.password)
            me = a.request("GET", "/api/v1/me/")["result"]
            s.ids["user"] = me.get("username")

        def create_database(st: Step) -> None:
            name = f"e2e examples {sfx}"
            res = a.request("POST", "/api/v1/database/", {
                "database_name": name,
                "sqlalchemy_uri": s.args.examples_uri,
                "expose_in_sqllab": True,
            })
            s.db_id = res["id"]
            s.db_uuid = a.request("GET", f"/api/v1/database/{s.db_id}")["result"]["uuid"]
            s.ids["database"] = {"id": s.db_id, "uuid": s.db_uuid}
            e = created("dbs", f"database '{name}' created", s.db_uuid,
                        database_name=eq(name), expose_in_sqllab=eq(True),
                        created_by_fk=is_uuid())
            e.absent = SECRET_FIELDS
            st.expects.append(e)

        def create_dataset(st: Step) -> None:
            res = a.request("POST", "/api/v1/dataset/", {
                "database": s.db_id, "schema": "public", "table_name": "sales",
            })
            s.ds_id = res["id"]
            full = a.request("GET", f"/api/v1/dataset/{s.ds_id}")["result"]
            s.ds_uuid = full["uuid"]
            s.ids["dataset"] = {"id": s.ds_id, "uuid": s.ds_uuid}
            st.expects.append(created("tables", "dataset public.sales created", s.ds_uuid,
                                      table_name=eq("sales"), schema=eq("public"),
                                      database_id=eq(s.db_uuid)))
            columns = {c["column_name"]: c["uuid"] for c in full["columns"]}
            for col in ("region", "amount"):
                st.expects.append(created("table_columns", f"column {col} of the dataset",
                                          columns[col], column_name=eq(col),
                                          table_id=eq(s.ds_uuid)))

        def create_dashboard(st: Step) -> None:
            s.dash_title = f"E2E dashboard {sfx}"
            res = a.request("POST", "/api/v1/dashboard/", {
                "dashboard_title": s.dash_title, "published": True,
            })
            s.dash_id = res["id"]
            s.dash_uuid = a.request("GET", f"/api/v1/dashboard/{s.dash_id}")["result"]["uuid"]
            s.ids["dashboard"] = {"id": s.dash_id, "uuid": s.dash_uuid}
            st.expects.append(created("dashboards", "dashboard created", s.dash_uuid,
                                      dashboard_title=eq(s.dash_title), published=eq(True)))
            st.expects.append(Expect("dashboard_user", "its owner row (dashboard uuid, user)", {
                "$exists": eq(True), "dashboard_id": eq(s.dash_uuid), "user_id": is_uuid()}))
            st.expects.append(Expect("tagged_object", "its system tag (TAGGING_SYSTEM)", {
                "$exists": eq(True), "object_type": eq("dashboard"),
                "object_id": eq(s.dash_uuid), "tag_id": is_uuid()}))

        def create_chart(st: Step) -> None:
            s.chart_name = f"E2E chart {sfx}"
            params = chart_params(s.ds_id, 100)
            res = a.request("POST", "/api/v1/chart/", {
                "slice_name": s.chart_name,
                "viz_type": "table",
                "datasource_id": s.ds_id,
                "datasource_type": "table",
                "params": json.dumps(params),
                "query_context": json.dumps(query_context(s.ds_id, params)),
                "dashboards": [s.dash_id],
            })
            s.chart_id = res["id"]
            s.chart_uuid = a.request("GET", f"/api/v1/chart/{s.chart_id}")["result"]["uuid"]
            s.ids["chart"] = {"id": s.chart_id, "uuid": s.chart_uuid}
            ds_ref = f"{s.ds_uuid}__table"
            st.expects.append(created(
                "slices", "chart created on the dataset", s.chart_uuid,
                slice_name=eq(s.chart_name), datasource_type=eq("table"),
                datasource_id=eq(s.ds_uuid),
                params=json_text(f"params.datasource == {ds_ref!r}",
                                 lambda p: p["datasource"] == ds_ref),
                query_context=json_text("query_context.datasource.id == dataset uuid",
                                        lambda q: q["datasource"]["id"] == s.ds_uuid
                                        and q["form_data"]["datasource"] == ds_ref)))
            st.expects.append(Expect("dashboard_slices", "chart placed on the dashboard", {
                "$exists": eq(True), "dashboard_id": eq(s.dash_uuid),
                "slice_id": eq(s.chart_uuid)}, bind="dashboard_slices"))

        def save_layout(st: Step) -> None:
            dash = a.request("GET", f"/api/v1/dashboard/{s.dash_id}")["result"]
            md = json.loads(dash.get("json_metadata") or "{}")
            cid = s.chart_id
            md.update({
                "positions": layout(s.dash_title, cid, s.chart_name),
                "chart_configuration": {
                    str(cid): {"id": cid, "crossFilters": {"scope": "global", "chartsInScope": []}},
                },
                "global_chart_configuration": {
                    "scope": {"rootPath": ["ROOT_ID"], "excluded": []}, "chartsInScope": [cid],
                },
                "timed_refresh_immune_slices": [cid],
                "expanded_slices": {str(cid): False},
                "default_filters": "{}",
                "filter_scopes": {},
                "color_scheme": "supersetColors",
                "cross_filters_enabled": True,
                "refresh_frequency": 0,
            })
            a.request("PUT", f"/api/v1/dashboard/{s.dash_id}", {
                "certified_by": dash.get("certified_by"),
                "certification_details": dash.get("certification_details"),
                "css": dash.get("css") or "",
                "dashboard_title": s.dash_title,
                "slug": dash.get("slug"),
                "owners": [o["id"] for o in dash.get("owners", [])],
                "json_metadata": json.dumps(md),
            })
            stored = a.request("GET", f"/api/v1/dashboard/{s.dash_id}")["result"]
            node = chart_nodes(json.loads(stored["position_json"]))[0]["meta"]
            st.notes.append(f"Superset stored position chartId={node['chartId']} (local), "
                            f"meta.uuid={node.get('uuid')}")
            cu = s.chart_uuid

            def position_ok(p: dict) -> bool:
                nodes = chart_nodes(p)
                return len(nodes) == 1 and nodes[0]["meta"]["chartId"] == cu \
                    and nodes[0]["meta"]["uuid"] == cu

            def metadata_ok(m: dict) -> bool:
                cc = m["chart_configuration"]
                return (list(cc) == [cu] and cc[cu]["id"] == cu
                        and m["global_chart_configuration"]["chartsInScope"] == [cu]
                        and m["timed_refresh_immune_slices"] == [cu]
                        and list(m["expanded_slices"]) == [cu]
                        and "positions" not in m)

            st.expects.append(Expect("dashboards", "layout saved: chart ids published as uuids", {
                "position_json": json_text(
                    "CHART node meta.chartId == meta.uuid == chart uuid (not the local id "
                    f"{cid})", position_ok),
                "json_metadata": json_text(
                    "chart_configuration key/.id, global chartsInScope, "
                    "timed_refresh_immune_slices, expanded_slices == chart uuid", metadata_ok),
            }, entity=s.dash_uuid))

        def save_native_filter(st: Step) -> None:
            a.request("PUT", f"/api/v1/dashboard/{s.dash_id}/filters", {
                "modified": [native_filter(s.ds_id, s.chart_id)],
                "deleted": [],
                "reordered": [],
            })
            cu, du = s.chart_uuid, s.ds_uuid

            def filter_ok(m: dict) -> bool:
                nf = m["native_filter_configuration"]
                return (len(nf) == 1 and nf[0]["id"] == "NATIVE_FILTER-e2e-region"
                        and nf[0]["targets"][0]["datasetId"] == du
                        and nf[0]["chartsInScope"] == [cu]
                        and m["chart_configuration"][cu]["id"] == cu)

            st.expects.append(Expect("dashboards", "native filter saved", {
                "json_metadata": json_text(
                    "native filter targets[0].datasetId == dataset uuid, chartsInScope == "
                    "[chart uuid]", filter_ok)}, entity=s.dash_uuid))

        def rename_dashboard(st: Step) -> None:
            s.dash_title2 = f"E2E dashboard {sfx} renamed"
            a.request("PUT", f"/api/v1/dashboard/{s.dash_id}", {"dashboard_title": s.dash_title2})
            # Only the title changed: an unchanged (TOASTed) layout must not be published as null.
            st.expects.append(Expect("dashboards", "dashboard renamed", {
                "dashboard_title": eq(s.dash_title2)}, entity=s.dash_uuid,
                never_null=("position_json", "json_metadata")))

        def edit_chart(st: Step) -> None:
            params = chart_params(s.ds_id, 25)
            a.request("PUT", f"/api/v1/chart/{s.chart_id}", {"params": json.dumps(params)})
            ds_ref = f"{s.ds_uuid}__table"
            st.expects.append(Expect("slices", "chart params changed (row_limit 100 -> 25)", {
                "params": json_text(f"row_limit == 25 and datasource == {ds_ref!r}",
                                    lambda p: p["row_limit"] == 25 and p["datasource"] == ds_ref),
            }, entity=s.chart_uuid))

        def edit_dataset(st: Step) -> None:
            s.ds_description = f"Sales per region ({sfx})"
            a.request("PUT", f"/api/v1/dataset/{s.ds_id}", {"description": s.ds_description})
            st.expects.append(Expect("tables", "dataset description edited", {
                "description": eq(s.ds_description)}, entity=s.ds_uuid))

        def edit_database(st: Step) -> None:
            s.db_name2 = f"e2e examples {sfx} renamed"
            a.request("PUT", f"/api/v1/database/{s.db_id}", {"database_name": s.db_name2})
            e = Expect("dbs", "database renamed", {"database_name": eq(s.db_name2)},
                       entity=s.db_uuid, absent=SECRET_FIELDS)
            st.expects.append(e)

        def embedded(st: Step) -> None:
            base = f"/api/v1/dashboard/{s.dash_id}/embedded"
            one = ["https://one.example.com"]
            two = ["https://one.example.com", "https://two.example.com"]
            r1 = a.request("POST", base, {"allowed_domains": one})["result"]
            s.emb_uuid = r1["uuid"]
            st.expects.append(created("embedded_dashboards", "embedded config created",
                                      s.emb_uuid, dashboard_id=eq(s.dash_uuid),
                                      allow_domain_list=eq(",".join(one))))
            r2 = a.request("PUT", base, {"allowed_domains": two})["result"]
            if r2["uuid"] != s.emb_uuid:
                raise ValueError(f"PUT embedded changed its uuid: {s.emb_uuid} -> {r2['uuid']}")
            st.expects.append(Expect("embedded_dashboards", "embedded config updated", {
                "allow_domain_list": eq(",".join(two))}, entity=s.emb_uuid))
            a.request("DELETE", base)
            st.expects.append(deleted("embedded_dashboards", "embedded config deleted",
                                      s.emb_uuid))
            s.ids["embedded"] = {"uuid": s.emb_uuid}

        def tags(st: Step) -> None:
            s.tag = f"e2e-{sfx}"
            a.request("POST", "/api/v1/tag/", {
                "name": s.tag, "description": "made by the e2e check",
                "objects_to_tag": [["dashboard", s.dash_id]],
            })
            found = a.request("GET", "/api/v1/tag/?q=" + rison_filter("name", s.tag))["result"]
            s.tag_id = found[0]["id"]
            s.ids["tag"] = {"id": s.tag_id, "name": s.tag}
            st.expects.append(Expect("tag", f"custom tag '{s.tag}' created", {
                "$exists": eq(True), "name": eq(s.tag), "type": eq("custom")}, bind="tag"))
            st.expects.append(Expect("tagged_object", "dashboard tagged", {
                "$exists": eq(True), "object_type": eq("dashboard"),
                "object_id": eq(s.dash_uuid)}, bind="tagged_dashboard"))
            # tag the chart through the object endpoint (object type 2 = chart)
            a.request("POST", f"/api/v1/tag/2/{s.chart_id}/", {"properties": {"tags": [s.tag]}})
            st.expects.append(Expect("tagged_object", "chart tagged", {
                "$exists": eq(True), "object_type": eq("chart"),
                "object_id": eq(s.chart_uuid)}, bind="tagged_chart"))
            # edit as the UI does: the full object list is sent back
            a.request("PUT", f"/api/v1/tag/{s.tag_id}", {
                "name": s.tag, "description": "edited by the e2e check",
                "objects_to_tag": [["dashboard", s.dash_id], ["chart", s.chart_id]],
            })
            st.expects.append(Expect("tag", "tag description edited", {
                "description": eq("edited by the e2e check")}, entity_of="tag"))
            # untag the dashboard (object type 3 = dashboard)
            a.request("DELETE", f"/api/v1/tag/3/{s.dash_id}/{urllib.parse.quote(s.tag)}/")
            st.expects.append(deleted("tagged_object", "dashboard untagged",
                                      entity_of="tagged_dashboard"))
            # delete the tag; its last tagged object goes with it
            a.request("DELETE", "/api/v1/tag/?q=" + urllib.parse.quote(f"!('{s.tag}')"))
            st.expects.append(deleted("tag", "tag deleted", entity_of="tag"))
            st.expects.append(deleted("tagged_object", "chart's tagging deleted with the tag",
                                      entity_of="tagged_chart"))

        def delete_chart(st: Step) -> None:
            a.request("DELETE", f"/api/v1/chart/{s.chart_id}")
            st.expects.append(deleted("slices", "chart deleted", s.chart_uuid))
            st.expects.append(deleted("dashboard_slices", "its place on the dashboard deleted",
                                      entity_of="dashboard_slices"))

        def delete_dashboard(st: Step) -> None:
            a.request("DELETE", f"/api/v1/dashboard/{s.dash_id}")
            st.expects.append(deleted("dashboards", "dashboard deleted", s.dash_uuid))

        def delete_dataset(st: Step) -> None:
            a.request("DELETE", f"/api/v1/dataset/{s.ds_id}")
            st.expects.append(deleted("tables", "dataset deleted", s.ds_uuid))

        def delete_database(st: Step) -> None:
            a.request("DELETE", f"/api/v1/database/{s.db_id}")
            st.expects.append(deleted("dbs", "database deleted", s.db_uuid))

        plan: list[tuple[str, Callable[[Step], None]]] = [
            ("log in", login),
            ("create a database connection (POST /api/v1/database/)", create_database),
            ("create a dataset (POST /api/v1/dataset/)", create_dataset),
            ("create a dashboard (POST /api/v1/dashboard/)", create_dashboard),
            ("create a chart on the dashboard (POST /api/v1/chart/)", create_chart),
            ("save the dashboard layout (PUT /api/v1/dashboard/<id>, positions)", save_layout),
            ("save a native filter (PUT /api/v1/dashboard/<id>/filters)", save_native_filter),
            ("rename the dashboard (PUT /api/v1/dashboard/<id>)", rename_dashboard),
            ("change the chart's params (PUT /api/v1/chart/<id>)", edit_chart),
            ("edit the dataset's description (PUT /api/v1/dataset/<id>)", edit_dataset),
            ("rename the database (PUT /api/v1/database/<id>)", edit_database),
            ("create, update, delete the embedded config (/api/v1/dashboard/<id>/embedded)",
             embedded),
            ("create a tag, tag the dashboard and the chart, edit, untag, delete (/api/v1/tag/)",
             tags),
            ("delete the chart (DELETE /api/v1/chart/<id>)", delete_chart),
            ("delete the dashboard (DELETE /api/v1/dashboard/<id>)", delete_dashboard),
            ("delete the dataset (DELETE /api/v1/dataset/<id>)", delete_dataset),
            ("delete the database (DELETE /api/v1/database/<id>)", delete_database),
        ]
        for name, fn in plan:
            if not self.step(name, fn):
                break


# ------------------------------------------------------------------------ the topic ---


def find_replicator(given: str | None) -> str:
    if given:
        return given
    for profile in ("debug", "release"):
        path = REPO / "target" / profile / "replicator"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    print("[e2e] no replicator binary: building it (cargo build -p replicator)", flush=True)
    subprocess.run(["cargo", "build", "--quiet", "-p", "replicator", "--bin", "replicator"],
                   cwd=REPO, check=True)
    return str(REPO / "target" / "debug" / "replicator")


class Tail:
    """`replicator tail --follow` in the background; its lines are collected as they come."""

    def __init__(self, binary: str, brokers: str, topic: str, log: Path | None) -> None:
        self.records: list[dict] = []
        self.bad_lines: list[str] = []
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr = open(log, "ab") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [binary, "tail", "--kafka-brokers", brokers, "--topic", topic, "--follow"],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def drain(self, wait: float) -> bool:
        """Collects what arrived within `wait` seconds; false once the tail has exited."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                return True
            if line is None:
                return False
            try:
                self.records.append(json.loads(line))
            except ValueError:
                self.bad_lines.append(line.strip()[:300])
            if left <= 0:
                return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.stderr is not subprocess.DEVNULL:
            self.stderr.close()


def change_of(rec: dict) -> dict | None:
    return rec.get("body", {}).get("change")


def fields_of(change: dict) -> dict[str, Any]:
    return {f["path"]: f["value"] for f in change["fields"]}


def match(steps: list[Step], records: list[dict]) -> list[str]:
    """Finds each expectation's record, in step order: every record of a step comes after every
    record of the step before (each REST call commits before the next one starts). Returns what
    is still missing."""
    for st in steps:
        for e in st.expects:
            e.found = None
    changes = [(r["offset"], change_of(r)) for r in records if change_of(r)]
    bound: dict[str, str] = {}
    missing: list[str] = []
    floor = -1
    for st in steps:
        top = floor
        for e in st.expects:
            entity = e.entity or (bound.get(e.entity_of) if e.entity_of else None)
            if e.entity_of and entity is None:
                missing.append(f"{st.name}: {e.what} (the {e.entity_of} record was not found)")
                continue
            for offset, ch in changes:
                if offset <= floor or ch["table"] != e.table:
                    continue
                if entity and ch["entity"] != entity:
                    continue
                values = fields_of(ch)
                if all(p in values and c.test(values[p]) for p, c in e.fields.items()):
                    e.found = {"offset": offset, "entity": ch["entity"], "clock": ch["clock"],
                               "fields": values}
                    break
            if e.found is None:
                missing.append(f"{st.name}: {e.what}")
                continue
            if e.bind:
                bound[e.bind] = e.found["entity"]
            top = max(top, e.found["offset"])
        floor = top
    return missing


def audit(steps: list[Step], records: list[dict], region: str, secret: str | None) -> list[str]:
    """Checks over the records every expectation matched, and over the whole topic."""
    problems: list[str] = []
    for st in steps:
        for e in st.expects:
            if not e.found:
                continue
            values = e.found["fields"]
            for p in e.absent:
                if p in values:
                    problems.append(f"{st.name}: {e.what}: field {p!r} was published (a secret or "
                                    "region-local value)")
            for p in e.never_null:
                if p in values and values[p] is None:
                    problems.append(f"{st.name}: {e.what}: unchanged {p} was published as null")
            if e.entity is not None and e.found["entity"] != e.entity:
                problems.append(f"{st.name}: {e.what}: wrong entity")
    # each change of an entity advances its clock (the version vector's entry of this region)
    last: dict[tuple[str, str], tuple[int, str]] = {}
    for st in steps:
        for e in st.expects:
            if not e.found:
                continue
            key = (e.table, e.found["entity"])
            n = e.found["clock"].get(region, 0)
            if key in last and n <= last[key][0]:
                problems.append(f"{st.name}: {e.what}: clock {region}:{n} does not advance past "
                                f"{region}:{last[key][0]} ({last[key][1]})")
            last[key] = (n, e.what)
    undecodable = [r for r in records if "error" in r]
    if undecodable:
        problems.append(f"{len(undecodable)} undecodable records, the first at offset "
                        f"{undecodable[0].get('offset')}: {undecodable[0]['error']}")
    foreign = [r for r in records if "error" not in r and r.get("source") != region]
    if foreign:
        problems.append(f"{len(foreign)} records from another source than region {region!r}, "
                        f"the first at offset {foreign[0].get('offset')}: "
                        f"{foreign[0].get('source')!r}")
    for r in records:
        ch = change_of(r)
        if ch and ch["table"] == "dbs":
            leaked = [p for p in fields_of(ch) if p in SECRET_FIELDS]
            if leaked:
                problems.append(f"offset {r['offset']}: dbs record publishes {leaked}")
    if secret:
        for r in records:
            if secret in json.dumps(r):
                problems.append(f"offset {r.get('offset')}: the examples password is on the topic")
                break
    # every transaction is closed by a commit record counting its changes
    counts: dict[str, set[int]] = {}
    for r in records:
        if change_of(r):
            counts.setdefault(r["commit_lsn"], set()).add(r["seq"])
    for r in records:
        commit = r.get("body", {}).get("commit")
        if commit is not None and len(counts.get(r["commit_lsn"], ())) != commit["change_count"]:
            problems.append(f"offset {r['offset']}: commit at {r['commit_lsn']} counts "
                            f"{commit['change_count']} changes, the topic holds "
                            f"{len(counts.get(r['commit_lsn'], ()))}")
    return problems


def describe_entity(records: list[dict], table: str, entity: str | None) -> list[str]:
    """What the topic holds for an entity (to explain a missing expectation)."""
    out = []
    for r in records:
        ch = change_of(r)
        if ch and ch["table"] == table and (entity is None or ch["entity"] == entity):
            vals = fields_of(ch)
            shown = {k: (v if len(json.dumps(v)) < 120 else json.dumps(v)[:117] + "...")
                     for k, v in vals.items() if k not in ("changed_on", "created_on")}
            out.append(f"      offset {r['offset']}: {ch['entity']} {json.dumps(shown)[:600]}")
    return out[-8:]


# ------------------------------------------------------------------------ main ---


def superset_errors(log: str | None, since: int) -> list[str]:
    """The PostgreSQL / traceback lines Superset logged since byte `since` (explains a 4xx/5xx)."""
    if not log or not os.path.exists(log):
        return []
    with open(log, "rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    keep = [ln for ln in text.splitlines()
            if re.search(r"psycopg2|sqlalchemy\.exc|ERROR|Error:|DETAIL|HINT", ln)]
    return keep[-15:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:59088", help="Superset's web address")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="admin")
    ap.add_argument("--examples-uri", default=os.environ.get("E2E_EXAMPLES_URI"),
                    help="SQLAlchemy URI of the examples database, holding table public.sales "
                         "(default: $E2E_EXAMPLES_URI; keep passwords off the command line)")
    ap.add_argument("--kafka-brokers", required=True)
    ap.add_argument("--topic", required=True, help="the topic `replicator capture` publishes to")
    ap.add_argument("--region", required=True, help="the region id given to setup and capture")
    ap.add_argument("--replicator", help="the replicator binary (default: target/debug or "
                                         "target/release, built when missing)")
    ap.add_argument("--suffix", default=uuid.uuid4().hex[:8],
                    help="appended to every name this run creates (default: random)")
    ap.add_argument("--wait", type=float, default=90,
                    help="seconds to wait for the last change to reach the topic")
    ap.add_argument("--report", help="write a JSON report here")
    ap.add_argument("--superset-log", help="Superset's web log: on a failed call its errors are "
                                           "shown")
    ap.add_argument("--tail-log", help="append replicator tail's stderr here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if not args.examples_uri:
        ap.error("--examples-uri or $E2E_EXAMPLES_URI is required")
    secret = urllib.parse.urlsplit(args.examples_uri).password

    binary = find_replicator(args.replicator)
    started = time.monotonic()
    log_mark = os.path.getsize(args.superset_log) if args.superset_log and \
        os.path.exists(args.superset_log) else 0
    api = Superset(args.url, args.verbose)
    scenario = Scenario(api, args)
    print(f"[e2e] Superset {args.url}, topic {args.topic} on {args.kafka_brokers}, "
          f"run suffix {args.suffix}", flush=True)
    scenario.run()
    rest_failed = [st for st in scenario.steps if st.error]
    if rest_failed:
        for line in superset_errors(args.superset_log, log_mark):
            print(f"[e2e]   superset log: {line}", flush=True)

    # Read the topic until every expectation is met, or the deadline passes.
    print(f"[e2e] reading topic {args.topic} with `replicator tail` (up to {args.wait:.0f}s)",
          flush=True)
    tail = Tail(binary, args.kafka_brokers, args.topic,
                Path(args.tail_log) if args.tail_log else None)
    deadline = time.monotonic() + args.wait
    missing: list[str] = ["(nothing read yet)"]
    alive = True
    try:
        while time.monotonic() < deadline and alive:
            alive = tail.drain(2.0)
            missing = match(scenario.steps, tail.records)
            if not missing and tail.records:
                break
    finally:
        tail.stop()
    missing = match(scenario.steps, tail.records)
    problems = audit(scenario.steps, tail.records, args.region, secret)
    if not alive and missing:
        problems.append(f"replicator tail exited early (exit status {tail.proc.returncode})")
    if tail.bad_lines:
        problems.append(f"{len(tail.bad_lines)} lines from replicator tail are not JSON: "
                        f"{tail.bad_lines[0]}")

    # ---- summary
    print()
    print("=" * 100)
    print(f"End-to-end: capture of a real Superset ({args.url}) -> topic {args.topic}")
    print("=" * 100)
    for i, st in enumerate(scenario.steps, 1):
        ok = st.error is None and all(e.found for e in st.expects)
        print(f"{'PASS' if ok else 'FAIL'}  {i:2}. {st.name}")
        print(f"        REST: {', '.join(st.calls) or '-'}")
        if st.error:
            print(f"        ERROR: {st.error}")
        for note in st.notes:
            print(f"        note: {note}")
        for e in st.expects:
            if e.found:
                shown = ", ".join(f"{p}={'<json ok>' if len(json.dumps(e.found['fields'][p])) > 60 else json.dumps(e.found['fields'][p])}"
                                  for p in e.fields)
                print(f"        ok   {e.table} {e.found['entity']} @offset {e.found['offset']} "
                      f"clock {json.dumps(e.found['clock'])}: {e.what} [{shown}]")
            else:
                print(f"        MISSING {e.table} {e.entity or e.entity_of or '?'}: {e.what}")
                for p, c in e.fields.items():
                    print(f"             expected {p}: {c.what}")
                for line in describe_entity(tail.records, e.table, e.entity):
                    print(line)
    changes = sum(1 for r in tail.records if change_of(r))
    print("-" * 100)
    print(f"topic: {len(tail.records)} records read ({changes} changes)")
    for p in problems:
        print(f"PROBLEM: {p}")
    n_expect = sum(len(st.expects) for st in scenario.steps)
    n_found = sum(1 for st in scenario.steps for e in st.expects if e.found)
    passed = not rest_failed and not missing and not problems and len(scenario.steps) == 17
    print(f"{'PASS' if passed else 'FAIL'}: {len(scenario.steps) - len(rest_failed)}/17 steps "
          f"answered 2xx, {n_found}/{n_expect} expected changes published, "
          f"{len(problems)} problems ({time.monotonic() - started:.0f}s)")

    if args.report:
        report = {
            "passed": passed,
            "url": args.url,
            "topic": args.topic,
            "suffix": args.suffix,
            "ids": scenario.ids,
            "steps": [{
                "name": st.name, "calls": st.calls, "error": st.error, "notes": st.notes,
                "expects": [{"table": e.table, "what": e.what, "found": e.found}
                            for e in st.expects],
            } for st in scenario.steps],
            "missing": missing,
            "problems": problems,
        }
        Path(args.report).write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
