#!/usr/bin/env python3
"""End-to-end check of apply between two real Apache Superset 6.1 regions (standard library only).

Regions A and B are two Supersets, each with its own metadata database, and a `replicator run`
sidecar beside each (A applies B's topic, B applies A's). Through the REST APIs only, this:

   1. logs in to both (JWT + CSRF token with its session cookie)
   2. builds in A: a database connection to the examples database, a dataset on its table
      public.sales with a saved metric, a dashboard, three charts on the dataset (each with its
      query context, placed on the dashboard), the dashboard layout (saved as the UI's Save does:
      PUT json_metadata with `positions`) and a native filter scoped to the charts
   3. runs each chart's data query in A (GET /api/v1/chart/<id>/data/): the reference rows
   4. waits until B's REST API serves the dashboard by uuid, with the same title, its layout and
      native filter pointing at B's own chart and dataset ids; /dashboard/<B id>/charts lists the
      three charts (by uuid and name); /dashboard/<B id>/datasets lists the dataset (with B's own
      permission string); and each chart's data query in B answers 200 with the rows of B's
      own examples database (A's rows, or A's scaled by --b-scale)
   5. through B's API: renames the dashboard and a chart, reverses the layout's chart order
      and narrows the native filter to two charts (in B's ids); waits until A's API shows all
      of it in A's ids (and that A's dashboard still holds its three charts)

Each wait is bounded (--wait seconds) and polls with fresh GETs. Exit status: 0 when every check
passed, 1 otherwise, 2 on bad usage. The run's project entry point is `dev/e2e superset-apply`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from superset_capture import RestError, Superset, superset_errors  # noqa: E402


# ------------------------------------------------------------------------ the objects ---

METRIC = {"expressionType": "SIMPLE", "column": {"column_name": "amount"}, "aggregate": "SUM",
          "label": "SUM(amount)"}
SAVED_METRIC = "total_amount"


def charts_spec(sfx: str) -> list[dict[str, Any]]:
    """Three charts: what each one asks of the dataset."""
    return [
        {"name": f"E2E apply table {sfx}", "viz": "table", "columns": ["region"],
         "metrics": [METRIC]},
        {"name": f"E2E apply big number {sfx}", "viz": "big_number_total", "columns": [],
         "metrics": [SAVED_METRIC]},
        {"name": f"E2E apply pie {sfx}", "viz": "pie", "columns": ["region"],
         "metrics": [SAVED_METRIC]},
    ]


def chart_params(dataset_id: int, spec: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {
        "datasource": f"{dataset_id}__table",
        "viz_type": spec["viz"],
        "adhoc_filters": [],
        "row_limit": 100,
    }
    if spec["viz"] == "table":
        params.update({"query_mode": "aggregate", "groupby": spec["columns"],
                       "metrics": spec["metrics"], "order_desc": True})
    elif spec["viz"] == "big_number_total":
        params.update({"metric": spec["metrics"][0]})
    else:
        params.update({"groupby": spec["columns"], "metric": spec["metrics"][0]})
    return params


def query_context(dataset_id: int, spec: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    query: dict[str, Any] = {
        "columns": spec["columns"],
        "metrics": spec["metrics"],
        "filters": [],
        "extras": {"having": "", "where": ""},
        "row_limit": 100,
    }
    if spec["columns"]:
        query["orderby"] = [[spec["metrics"][0], False]]
    return {
        "datasource": {"id": dataset_id, "type": "table"},
        "force": False,
        "queries": [query],
        "form_data": params,
        "result_format": "json",
        "result_type": "full",
    }


def layout(title: str, charts: list[tuple[int, str]]) -> dict[str, Any]:
    """A v2 layout as the dashboard editor builds it: one row of chart nodes that carry the
    local chart id only (Superset adds meta.uuid itself when it saves `positions`)."""
    nodes = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": ["ROW-e2e"],
                    "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": title}},
        "ROW-e2e": {
            "type": "ROW", "id": "ROW-e2e", "children": [],
            "parents": ["ROOT_ID", "GRID_ID"], "meta": {"background": "BACKGROUND_TRANSPARENT"},
        },
    }
    for i, (chart_id, name) in enumerate(charts):
        key = f"CHART-e2e-{i}"
        nodes["ROW-e2e"]["children"].append(key)
        nodes[key] = {
            "type": "CHART", "id": key, "children": [],
            "parents": ["ROOT_ID", "GRID_ID", "ROW-e2e"],
            "meta": {"width": 4, "height": 50, "chartId": chart_id, "sliceName": name},
        }
    return nodes


FILTER_ID = "NATIVE_FILTER-e2e-apply-region"


def native_filter(dataset_id: int, chart_ids: list[int]) -> dict[str, Any]:
    return {
        "id": FILTER_ID,
        "name": "Region",
        "filterType": "filter_select",
        "type": "NATIVE_FILTER",
        "targets": [{"datasetId": dataset_id, "column": {"name": "region"}}],
        "controlValues": {"multiSelect": True, "enableEmptyFilter": False},
        "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
        "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
        "chartsInScope": chart_ids,
        "tabsInScope": [],
        "description": "",
    }


def chart_nodes(position: dict) -> list[dict]:
    return [n for n in position.values() if isinstance(n, dict) and n.get("type") == "CHART"]


def rows_of(payload: dict) -> list[dict]:
    """The rows of a chart data answer (its first query)."""
    return payload["result"][0]["data"]


def canon_rows(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def scaled(rows: list[dict], factor: float) -> list[dict]:
    """The rows with every number multiplied (every number the charts answer is a sum of
    amounts)."""
    def one(v: Any) -> Any:
        return v * factor if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    return [{k: one(v) for k, v in r.items()} for r in rows]


# ------------------------------------------------------------------------ the checks ---


class Failed(Exception):
    pass


class Check:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ok: bool | None = None
        self.details: list[str] = []
        self.seconds: float | None = None


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sfx = args.suffix
        self.a = Superset(args.url_a, args.verbose)
        self.b = Superset(args.url_b, args.verbose)
        self.checks: list[Check] = []
        self.ids: dict[str, Any] = {"A": {}, "B": {}}
        self.me: dict[str, Any] = {}  # each region's id of the logged-in user

    def check(self, name: str, fn: Callable[[Check], None]) -> bool:
        c = Check(name)
        self.checks.append(c)
        print(f"[e2e] {len(self.checks):2}. {name}", flush=True)
        t0 = time.monotonic()
        try:
            fn(c)
            c.ok = True
        except (Failed, RestError, KeyError, IndexError, TypeError, ValueError) as err:
            c.ok = False
            c.details.append(f"{type(err).__name__}: {err}")
            print(f"[e2e]     FAILED: {err}", flush=True)
        c.seconds = time.monotonic() - t0
        for d in c.details if c.ok else []:
            print(f"[e2e]     {d}", flush=True)
        return bool(c.ok)

    def wait_for(self, c: Check, what: str, probe: Callable[[], tuple[bool, str]]) -> None:
        """Polls `probe` (fresh GETs) until it holds or --wait seconds pass."""
        t0 = time.monotonic()
        deadline = t0 + self.args.wait
        last = "(not probed)"
        delay = 0.5
        while True:
            try:
                ok, last = probe()
            except RestError as err:
                ok, last = False, str(err)[:600]
            except (KeyError, IndexError, TypeError, ValueError) as err:
                ok, last = False, f"{type(err).__name__}: {err}"
            if ok:
                c.details.append(f"{what}: after {time.monotonic() - t0:.1f}s")
                return
            if time.monotonic() >= deadline:
                raise Failed(f"{what}: not within {self.args.wait:.0f}s; last seen: {last}")
            time.sleep(delay)
            delay = min(delay * 1.5, 3.0)

    # -------------------------------------------------------------------- the scenario ---

    def run(self) -> None:
        a, b, s = self.a, self.b, self
        sfx = self.sfx
        specs = charts_spec(sfx)

        def login(c: Check) -> None:
            for name, api in (("A", a), ("B", b)):
                api.login(s.args.user, s.args.password)
                me = api.request("GET", "/api/v1/me/")["result"]
                s.me[name] = me.get("id")
                c.details.append(f"{name} {api.base}: logged in as {me.get('username')} "
                                 f"(user id {me.get('id')})")

        def build_in_a(c: Check) -> None:
            s.db_name = f"e2e examples {sfx}"
            res = a.request("POST", "/api/v1/database/", {
                "database_name": s.db_name,
                "sqlalchemy_uri": s.args.examples_uri,
                "expose_in_sqllab": True,
            })
            s.db_id = res["id"]
            s.db_uuid = a.request("GET", f"/api/v1/database/{s.db_id}")["result"]["uuid"]
            res = a.request("POST", "/api/v1/dataset/", {
                "database": s.db_id, "schema": "public", "table_name": "sales",
            })
            s.ds_id = res["id"]
            # a saved metric, as the dataset editor adds one
            a.request("PUT", f"/api/v1/dataset/{s.ds_id}", {
                "description": f"Sales per region ({sfx})",
                "metrics": [{"metric_name": SAVED_METRIC, "expression": "SUM(amount)",
                             "verbose_name": "Total amount"}],
            })
            ds = a.request("GET", f"/api/v1/dataset/{s.ds_id}")["result"]
            s.ds_uuid = ds["uuid"]
            s.dash_title = f"E2E apply dashboard {sfx}"
            res = a.request("POST", "/api/v1/dashboard/", {
                "dashboard_title": s.dash_title, "published": True,
            })
            s.dash_id = res["id"]
            s.dash_uuid = a.request("GET", f"/api/v1/dashboard/{s.dash_id}")["result"]["uuid"]
            s.charts_a: list[dict[str, Any]] = []
            for spec in specs:
                params = chart_params(s.ds_id, spec)
                res = a.request("POST", "/api/v1/chart/", {
                    "slice_name": spec["name"],
                    "viz_type": spec["viz"],
                    "datasource_id": s.ds_id,
                    "datasource_type": "table",
                    "params": json.dumps(params),
                    "query_context": json.dumps(query_context(s.ds_id, spec, params)),
                    "dashboards": [s.dash_id],
                })
                got = a.request("GET", f"/api/v1/chart/{res['id']}")["result"]
                s.charts_a.append({"id": res["id"], "uuid": got["uuid"], "name": spec["name"]})
            cids = [ch["id"] for ch in s.charts_a]
            dash = a.request("GET", f"/api/v1/dashboard/{s.dash_id}")["result"]
            md = json.loads(dash.get("json_metadata") or "{}")
            md.update({
                "positions": layout(s.dash_title, [(ch["id"], ch["name"]) for ch in s.charts_a]),
                "chart_configuration": {
                    str(i): {"id": i, "crossFilters": {"scope": "global", "chartsInScope": []}}
                    for i in cids
                },
                "global_chart_configuration": {
                    "scope": {"rootPath": ["ROOT_ID"], "excluded": []}, "chartsInScope": cids,
                },
                "timed_refresh_immune_slices": [],
                "expanded_slices": {},
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
            a.request("PUT", f"/api/v1/dashboard/{s.dash_id}/filters", {
                "modified": [native_filter(s.ds_id, cids)], "deleted": [], "reordered": [],
            })
            # what A holds now: the reference for B
            listed = a.request("GET", f"/api/v1/dashboard/{s.dash_id}/charts")["result"]
            if sorted(x["id"] for x in listed) != sorted(cids):
                raise Failed(f"A's /dashboard/{s.dash_id}/charts lists {listed!r}")
            stored = a.request("GET", f"/api/v1/dashboard/{s.dash_id}")["result"]
            nodes = chart_nodes(json.loads(stored["position_json"]))
            if sorted(n["meta"]["chartId"] for n in nodes) != sorted(cids):
                raise Failed(f"A stored a layout without the three charts: {nodes!r}")
            s.ids["A"] = {"database": [s.db_id, s.db_uuid], "dataset": [s.ds_id, s.ds_uuid],
                          "dashboard": [s.dash_id, s.dash_uuid],
                          "charts": [[ch["id"], ch["uuid"]] for ch in s.charts_a]}
            c.details.append(f"database {s.db_uuid} (id {s.db_id}), dataset {s.ds_uuid} "
                             f"(id {s.ds_id}), dashboard {s.dash_uuid} (id {s.dash_id})")
            for ch in s.charts_a:
                c.details.append(f"chart {ch['uuid']} (id {ch['id']}): {ch['name']}")

        def data_in_a(c: Check) -> None:
            for ch in s.charts_a:
                res = a.request("GET", f"/api/v1/chart/{ch['id']}/data/?force=true")
                rows = rows_of(res)
                if not rows:
                    raise Failed(f"chart {ch['name']} answered no rows in A")
                ch["rows"] = canon_rows(rows)
                ch["rows_b"] = canon_rows(scaled(rows, s.args.b_scale))
                c.details.append(f"{ch['name']}: {len(rows)} rows, e.g. {rows[0]}")

        # ---- B serves what A built
        def dashboard_in_b(c: Check) -> None:
            def probe() -> tuple[bool, str]:
                d = b.request("GET", f"/api/v1/dashboard/{s.dash_uuid}")["result"]
                s.dash_b = d
                if d.get("dashboard_title") != s.dash_title:
                    return False, f"title {d.get('dashboard_title')!r}"
                return True, ""

            self.wait_for(c, f"GET /api/v1/dashboard/{s.dash_uuid} in B", probe)
            d = s.dash_b
            s.dash_id_b = d["id"]
            c.details.append(f"B serves it as id {s.dash_id_b}: {d['dashboard_title']!r}, "
                             f"published {d.get('published')}")
            if s.dash_id_b == s.dash_id:
                c.details.append(f"note: A and B gave the dashboard the same id {s.dash_id}")
            owners = [o.get("id") for o in d.get("owners", [])]
            if owners != [s.me["B"]]:
                raise Failed(f"B's dashboard owners {d.get('owners')}, want B's admin (id "
                             f"{s.me['B']})")
            c.details.append(f"owned by B's admin (user id {s.me['B']}), mapped by username")
            if d.get("published") is not True:
                raise Failed(f"B's dashboard is not published: {d.get('published')!r}")

        def charts_in_b(c: Check) -> None:
            want = {ch["uuid"]: ch["name"] for ch in s.charts_a}

            def probe() -> tuple[bool, str]:
                listed = b.request("GET", f"/api/v1/dashboard/{s.dash_id_b}/charts")["result"]
                got: dict[str, tuple[int, str]] = {}
                for x in listed:
                    one = b.request("GET", f"/api/v1/chart/{x['id']}")["result"]
                    got[one["uuid"]] = (x["id"], x["slice_name"])
                have = {u: n for u, (_, n) in got.items()}
                if have != want:
                    return False, f"charts listed {sorted(have.items())}"
                s.chart_ids_b = {u: i for u, (i, _) in got.items()}
                return True, ""

            self.wait_for(c, f"GET /api/v1/dashboard/{s.dash_id_b}/charts in B lists the three "
                             "charts by uuid and name", probe)
            for ch in s.charts_a:
                cid = s.chart_ids_b[ch["uuid"]]
                one = b.request("GET", f"/api/v1/chart/{cid}")["result"]
                owners = [o.get("id") for o in one.get("owners", [])]
                if owners != [s.me["B"]]:
                    raise Failed(f"{ch['name']}: B's owners {one.get('owners')}, want B's admin")
                c.details.append(f"{ch['name']}: A id {ch['id']} -> B id {cid}, "
                                 f"{one.get('viz_type')}, owned by B's admin")
            s.ids["B"]["charts"] = [[s.chart_ids_b[ch["uuid"]], ch["uuid"]] for ch in s.charts_a]
            s.ids["B"]["dashboard"] = [s.dash_id_b, s.dash_uuid]

        def datasets_in_b(c: Check) -> None:
            def probe() -> tuple[bool, str]:
                listed = b.request("GET", f"/api/v1/dashboard/{s.dash_id_b}/datasets")["result"]
                if len(listed) != 1:
                    return False, f"{len(listed)} datasets listed: {[x.get('table_name') for x in listed]}"
                x = listed[0]
                one = b.request("GET", f"/api/v1/dataset/{x['id']}")["result"]
                if one["uuid"] != s.ds_uuid:
                    return False, f"dataset {x['id']} has uuid {one['uuid']}"
                s.ds_b, s.ds_b_listed = one, x
                return True, ""

            self.wait_for(c, f"GET /api/v1/dashboard/{s.dash_id_b}/datasets in B lists the "
                             "dataset", probe)
            ds, x = s.ds_b, s.ds_b_listed
            s.ds_id_b = ds["id"]
            metrics = [m["metric_name"] for m in ds.get("metrics", [])]
            columns = sorted(col["column_name"] for col in ds.get("columns", []))
            c.details.append(f"dataset {ds['schema']}.{ds['table_name']}: B id {s.ds_id_b}, "
                             f"columns {columns}, metrics {metrics}, perm {x.get('perm')!r}")
            if SAVED_METRIC not in metrics:
                raise Failed(f"B's dataset has metrics {metrics}, not {SAVED_METRIC}")
            if not {"id", "region", "ts", "amount"} <= set(columns):
                raise Failed(f"B's dataset has columns {columns}")
            want_perm = f"(id:{s.ds_id_b})"
            if not (x.get("perm") or "").endswith(want_perm):
                raise Failed(f"B's dataset perm {x.get('perm')!r} does not end in {want_perm}")
            db = b.request("GET", f"/api/v1/database/{ds['database']['id']}")["result"]
            s.db_id_b = db["id"]
            s.ids["B"]["dataset"] = [s.ds_id_b, s.ds_uuid]
            s.ids["B"]["database"] = [s.db_id_b, db.get("uuid")]
            c.details.append(f"database {db['database_name']!r}: B id {db['id']}, uuid "
                             f"{db.get('uuid')}, backend {db.get('backend')}")
            if db.get("uuid") not in (None, s.db_uuid):
                raise Failed(f"B's dataset's database has uuid {db.get('uuid')}, not {s.db_uuid}")

        def layout_in_b(c: Check) -> None:
            d = b.request("GET", f"/api/v1/dashboard/{s.dash_id_b}")["result"]
            ids_b = s.chart_ids_b
            nodes = chart_nodes(json.loads(d["position_json"] or "{}"))
            got = sorted((n["meta"].get("chartId"), n["meta"].get("uuid")) for n in nodes)
            want = sorted((ids_b[ch["uuid"]], ch["uuid"]) for ch in s.charts_a)
            if got != want:
                raise Failed(f"B's position_json chart nodes (chartId, uuid) {got}, want {want}")
            c.details.append(f"position_json: chart nodes carry B's ids {[g[0] for g in got]}")
            md = json.loads(d["json_metadata"] or "{}")
            nf = [f for f in md.get("native_filter_configuration", []) if f["id"] == FILTER_ID]
            if not nf:
                raise Failed(f"B's json_metadata has no native filter {FILTER_ID}: "
                             f"{md.get('native_filter_configuration')!r}")
            f = nf[0]
            want_scope = sorted(ids_b.values())
            if f["targets"][0]["datasetId"] != s.ds_id_b or sorted(f["chartsInScope"]) != want_scope:
                raise Failed(f"B's native filter targets {f['targets']}, chartsInScope "
                             f"{f['chartsInScope']}; want datasetId {s.ds_id_b}, charts {want_scope}")
            c.details.append(f"native filter: datasetId {s.ds_id_b}, chartsInScope {want_scope}")
            cc = md.get("chart_configuration", {})
            if sorted(int(k) for k in cc) != want_scope:
                raise Failed(f"B's chart_configuration keys {sorted(cc)}, want {want_scope}")
            c.details.append(f"chart_configuration keyed by B's chart ids {sorted(cc)}")

        def data_in_b(c: Check) -> None:
            for ch in s.charts_a:
                cid = s.chart_ids_b[ch["uuid"]]
                one = b.request("GET", f"/api/v1/chart/{cid}")["result"]
                qc = json.loads(one.get("query_context") or "null")
                if not qc or qc["datasource"]["id"] != s.ds_id_b:
                    raise Failed(f"{ch['name']}: B's query_context names datasource "
                                 f"{qc and qc.get('datasource')}, want id {s.ds_id_b}")
                res = b.request("GET", f"/api/v1/chart/{cid}/data/?force=true")
                rows = rows_of(res)
                if not rows:
                    raise Failed(f"{ch['name']}: B's data query answered no rows")
                same = "the same as A's" if s.args.b_scale == 1 else \
                    f"A's with every amount x{s.args.b_scale:g} (B's own examples database)"
                if canon_rows(rows) != ch["rows_b"]:
                    raise Failed(f"{ch['name']}: B's rows {canon_rows(rows)[:5]} are not {same}: "
                                 f"{ch['rows_b'][:5]} (A's: {ch['rows'][:5]})")
                c.details.append(f"{ch['name']}: GET /api/v1/chart/{cid}/data/ -> 200, "
                                 f"{len(rows)} rows, {same}")

        # ---- an edit through B shows up in A
        def edit_in_b(c: Check) -> None:
            s.dash_title2 = f"E2E apply dashboard {sfx} renamed in B"
            b.request("PUT", f"/api/v1/dashboard/{s.dash_id_b}", {"dashboard_title": s.dash_title2})
            s.edited = s.charts_a[0]
            s.chart_name2 = f"{s.edited['name']} renamed in B"
            b.request("PUT", f"/api/v1/chart/{s.chart_ids_b[s.edited['uuid']]}",
                      {"slice_name": s.chart_name2})
            d = b.request("GET", f"/api/v1/dashboard/{s.dash_id_b}")["result"]
            if d["dashboard_title"] != s.dash_title2:
                raise Failed(f"B did not keep its own edit: {d['dashboard_title']!r}")
            c.details.append(f"B: dashboard {s.dash_id_b} -> {s.dash_title2!r}, chart "
                             f"{s.chart_ids_b[s.edited['uuid']]} -> {s.chart_name2!r}")
            # the layout, reversed, saved as the UI's Save does (in B's ids)
            ids_b = s.chart_ids_b
            names = {ch["uuid"]: ch["name"] for ch in s.charts_a}
            names[s.edited["uuid"]] = s.chart_name2
            s.order = [ch["uuid"] for ch in reversed(s.charts_a)]
            md = json.loads(d.get("json_metadata") or "{}")
            md["positions"] = layout(s.dash_title2, [(ids_b[u], names[u]) for u in s.order])
            b.request("PUT", f"/api/v1/dashboard/{s.dash_id_b}", {
                "certified_by": d.get("certified_by"),
                "certification_details": d.get("certification_details"),
                "css": d.get("css") or "",
                "dashboard_title": s.dash_title2,
                "slug": d.get("slug"),
                "owners": [o["id"] for o in d.get("owners", [])],
                "json_metadata": json.dumps(md),
            })
            # the native filter narrowed to the first two charts (in B's ids)
            s.scope = [ch["uuid"] for ch in s.charts_a[:2]]
            b.request("PUT", f"/api/v1/dashboard/{s.dash_id_b}/filters", {
                "modified": [native_filter(s.ds_id_b, [ids_b[u] for u in s.scope])],
                "deleted": [], "reordered": [],
            })
            c.details.append(f"B: layout reordered to chart ids {[ids_b[u] for u in s.order]}, "
                             f"native filter scoped to {[ids_b[u] for u in s.scope]}")

        def edit_in_a(c: Check) -> None:
            def dash_probe() -> tuple[bool, str]:
                d = a.request("GET", f"/api/v1/dashboard/{s.dash_id}")["result"]
                return d["dashboard_title"] == s.dash_title2, f"title {d['dashboard_title']!r}"

            def chart_probe() -> tuple[bool, str]:
                one = a.request("GET", f"/api/v1/chart/{s.edited['id']}")["result"]
                return one["slice_name"] == s.chart_name2, f"slice_name {one['slice_name']!r}"

            self.wait_for(c, f"A's GET /api/v1/dashboard/{s.dash_id} shows B's title", dash_probe)
            self.wait_for(c, f"A's GET /api/v1/chart/{s.edited['id']} shows B's name", chart_probe)
            listed = a.request("GET", f"/api/v1/dashboard/{s.dash_id}/charts")["result"]
            names = sorted(x["slice_name"] for x in listed)
            want = sorted([s.chart_name2] + [ch["name"] for ch in s.charts_a[1:]])
            if names != want:
                raise Failed(f"A's /dashboard/{s.dash_id}/charts lists {names}, want {want}")
            ids_a = {ch["uuid"]: ch["id"] for ch in s.charts_a}
            want_order = [ids_a[u] for u in s.order]
            want_scope = [ids_a[u] for u in s.scope]

            def layout_probe() -> tuple[bool, str]:
                d = a.request("GET", f"/api/v1/dashboard/{s.dash_id}")["result"]
                pos = json.loads(d["position_json"] or "{}")
                row = [pos[k]["meta"].get("chartId") for k in pos.get("ROW-e2e", {}).get("children", [])]
                uuids = [pos[k]["meta"].get("uuid") for k in pos.get("ROW-e2e", {}).get("children", [])]
                md = json.loads(d["json_metadata"] or "{}")
                nf = [f for f in md.get("native_filter_configuration", []) if f["id"] == FILTER_ID]
                scope = nf[0]["chartsInScope"] if nf else None
                target = nf[0]["targets"][0]["datasetId"] if nf else None
                ok = (row == want_order and uuids == s.order and scope == want_scope
                      and target == s.ds_id)
                return ok, (f"row chartIds {row}, native filter chartsInScope {scope} on "
                            f"datasetId {target}")

            self.wait_for(c, f"A's layout shows B's order {want_order} and the native filter "
                             f"B's scope {want_scope}, in A's ids", layout_probe)
            c.details.append(f"A's dashboard still holds its three charts (layout and /charts), "
                             f"the renamed one as {s.chart_name2!r}")

        plan: list[tuple[str, Callable[[Check], None]]] = [
            ("log in to A and B", login),
            ("build in A: database, dataset (+ metric), dashboard, 3 charts, layout, native "
             "filter", build_in_a),
            ("each chart's data query runs in A (GET /api/v1/chart/<id>/data/)", data_in_a),
            ("B serves the dashboard by uuid (GET /api/v1/dashboard/<uuid>)", dashboard_in_b),
            ("B lists its charts (GET /api/v1/dashboard/<id>/charts)", charts_in_b),
            ("B lists its dataset (GET /api/v1/dashboard/<id>/datasets)", datasets_in_b),
            ("B's layout and native filter name B's own chart and dataset ids", layout_in_b),
            ("each chart's data query runs in B on B's own connection (GET /api/v1/chart/<id>/data/)",
             data_in_b),
            ("edit through B: rename the dashboard and a chart, reorder the layout, narrow "
             "the native filter", edit_in_b),
            ("A's API shows B's edits", edit_in_a),
        ]
        for name, fn in plan:
            if not self.check(name, fn):
                break
        self.planned = len(plan)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url-a", required=True, help="region A's Superset")
    ap.add_argument("--url-b", required=True, help="region B's Superset")
    ap.add_argument("--user", default="admin")
    ap.add_argument("--password", default="admin")
    ap.add_argument("--examples-uri", default=os.environ.get("E2E_EXAMPLES_URI"),
                    help="SQLAlchemy URI, in A, of the examples database holding public.sales "
                         "(default: $E2E_EXAMPLES_URI; keep passwords off the command line)")
    ap.add_argument("--suffix", default=uuid.uuid4().hex[:8],
                    help="appended to every name this run creates; the database connection is "
                         "named 'e2e examples <suffix>' (B's local columns file must name it)")
    ap.add_argument("--b-scale", type=float, default=1,
                    help="B's examples database holds A's amounts times this (default 1: the "
                         "same data), so B's chart rows must be A's scaled by it")
    ap.add_argument("--wait", type=float, default=120,
                    help="seconds each replication wait may take")
    ap.add_argument("--report", help="write a JSON report here")
    ap.add_argument("--superset-log-a", help="A's web log: on a failure its errors are shown")
    ap.add_argument("--superset-log-b", help="B's web log")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if not args.examples_uri:
        ap.error("--examples-uri or $E2E_EXAMPLES_URI is required")

    logs = {"A": args.superset_log_a, "B": args.superset_log_b}
    marks = {k: (os.path.getsize(v) if v and os.path.exists(v) else 0) for k, v in logs.items()}
    started = time.monotonic()
    run = Run(args)
    print(f"[e2e] A {args.url_a}, B {args.url_b}, run suffix {args.suffix}", flush=True)
    run.run()
    passed = len(run.checks) == run.planned and all(c.ok for c in run.checks)

    print()
    print("=" * 100)
    print(f"End-to-end: apply between two Superset regions, A {args.url_a} <-> B {args.url_b}")
    print("=" * 100)
    for i, c in enumerate(run.checks, 1):
        print(f"{'PASS' if c.ok else 'FAIL'}  {i:2}. {c.name} ({c.seconds:.1f}s)")
        for d in c.details:
            print(f"        {d}")
    for i in range(len(run.checks), run.planned):
        print(f"SKIP  {i + 1:2}. (not reached)")
    if not passed:
        for name, log in logs.items():
            for line in superset_errors(log, marks[name]):
                print(f"superset {name} log: {line}")
    print("-" * 100)
    n_ok = sum(1 for c in run.checks if c.ok)
    print(f"{'PASS' if passed else 'FAIL'}: {n_ok}/{run.planned} checks passed "
          f"({time.monotonic() - started:.0f}s)")

    if args.report:
        report = {
            "passed": passed,
            "url_a": args.url_a,
            "url_b": args.url_b,
            "suffix": args.suffix,
            "ids": run.ids,
            "checks": [{"name": c.name, "ok": c.ok, "seconds": c.seconds, "details": c.details}
                       for c in run.checks],
        }
        Path(args.report).write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
