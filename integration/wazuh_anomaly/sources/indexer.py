"""The Wazuh indexer as an alert source, with the feature work pushed down to it.

Two paths, one scenario format:

- **Pushdown** (every scenario without `rare` features or Python-regex filters): the
  indexer computes each bucket's features itself. Without an entity split, one
  `date_histogram` (fixed interval, UTC, `min_doc_count: 1`: empty buckets are the
  zeros the aggregator's frame starts with, not trees of zeros on the wire) with one
  `filter` sub-aggregation per feature and a `cardinality` / `max` / `avg` / `sum` under
  it. With an entity split, a `composite` aggregation over (entity, time bucket) computes
  the cells, paged by `after_key`: each page is put into the aggregator before the next
  is asked for, so the client holds one page at a time whatever the number of entities.
  With every entity wanted (`entity.top: all`) that is all; with a finite `entity.top`
  another composite first ranks the entities by how many alerts match any feature (only
  a count per entity is kept) and the cells of the busiest are asked for. Only numbers
  cross the network, and the scenarios' requests of one phase share a round trip
  (`_msearch`).
- **Raw documents** (`rare` needs every value in time order; a regex filter is Python's
  `re`, not Lucene's): a point in time (PIT) and `search_after`, sorted by time, pages
  of `indexer.page_size`, only the fields the scenarios read. No 10,000-hit cap.

The features equal the alerts-file source's (tests/test_indexer_source.py proves it on
the AIT alerts). Distinct counts use `cardinality` with `indexer.precision_threshold`
(default 3000, at most 40000): exact up to that many distinct values in one bucket (the
indexer keeps the value hashes), a HyperLogLog++ estimate above it (typically within a
few percent). Each such bucket costs threshold x 8 bytes of indexer heap, so requests
are sized to stay under REQUEST_HEAP_BYTES.
"""
from __future__ import annotations

import gc
import logging
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from ..core.config import Condition, FeatureSpec, IndexerSpec, Scenario
from ..core.indexer import (IndexerError, field_types, make_client, mapping_problems, pushdown_reason,
                            retrying, scenario_fields)
from ..core.reading import FeatureSink, SourceStats, SourceUnreadable
from ..core.registry import SOURCES
from ..core.timeparse import wazuh_timestamp

# The client's channel (core/indexer.py): one name to filter on for everything the indexer does.
log = logging.getLogger("wazuh_anomaly.indexer.client")

COMPOSITE_PAGE = 5000
MAX_BUCKETS = 60000             # OpenSearch refuses a response with more than 65535 buckets
# Each cardinality bucket costs precision_threshold * 8 bytes of indexer heap: pages and
# histogram chunks are sized so one request stays under this (an _msearch runs a few such
# requests at once: at most the indexer's search thread pool, 4 on a 2-core node).
REQUEST_HEAP_BYTES = 32 * 1024 * 1024
PIT_KEEP_ALIVE = "2m"
HISTOGRAM_CHUNKS_PER_ROUND = 16  # time chunks of one histogram sent in one round trip


# --------------------------------------------------------------------------- queries

def condition_query(cond: Condition) -> dict:
    """One scenario condition as an OpenSearch query with the alerts-file semantics."""
    must: list[dict] = []
    must_not: list[dict] = []
    f = cond.field
    if cond.equals:
        must.append({"terms": {f: list(cond.equals)}})
    if cond.not_in:
        must_not.append({"terms": {f: list(cond.not_in)}})
    if cond.prefix is not None:
        must.append({"prefix": {f: cond.prefix}})
    for prefix in cond.not_prefix:
        must_not.append({"prefix": {f: prefix}})
    if cond.min is not None or cond.max is not None:
        bounds = {}
        if cond.min is not None:
            bounds["gte"] = cond.min
        if cond.max is not None:
            bounds["lte"] = cond.max
        must.append({"range": {f: bounds}})
    if cond.exists is True:
        must.append({"exists": {"field": f}})
    elif cond.exists is False:
        must_not.append({"exists": {"field": f}})
    if cond.regex is not None:
        raise ValueError(f"the regex on {f} is Python's, not Lucene's: not pushed down")
    query: dict = {}
    if must:
        query["filter"] = must
    if must_not:
        query["must_not"] = must_not
    return {"bool": query} if query else {"match_all": {}}


def feature_query(feature: FeatureSpec) -> dict:
    """The alerts a feature reads: its filter and, except for counts, a value in its field."""
    clauses = [condition_query(c) for c in feature.filter]
    if feature.aggregation != "count" and feature.field:
        clauses.append({"exists": {"field": feature.field}})
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}


def volume_query(scenario: Scenario) -> dict:
    """Alerts that count towards an entity's volume: those any feature reads."""
    return {"bool": {"should": [feature_query(f) for f in scenario.features], "minimum_should_match": 1}}


def feature_aggs(scenario: Scenario, precision_threshold: int) -> dict:
    aggs = {}
    for i, f in enumerate(scenario.features):
        sub = {"filter": feature_query(f)}
        if f.aggregation == "distinct":
            sub["aggs"] = {"v": {"cardinality": {"field": f.field, "precision_threshold": precision_threshold}}}
        elif f.aggregation in ("max", "sum"):
            sub["aggs"] = {"v": {f.aggregation: {"field": f.field}}}
        elif f.aggregation == "mean":
            sub["aggs"] = {"v": {"avg": {"field": f.field}}}
        aggs[f"f{i}"] = sub
    return aggs


def feature_values(scenario: Scenario, bucket: dict) -> list[float]:
    """The feature values of one aggregation bucket, as the alerts-file source computes them."""
    out = []
    for i, f in enumerate(scenario.features):
        sub = bucket[f"f{i}"]
        if f.aggregation == "count":
            out.append(float(sub["doc_count"]))
            continue
        value = sub["v"]["value"]
        out.append(0.0 if value is None or (isinstance(value, float) and not math.isfinite(value)) else float(value))
    return out


def _ms(epoch: float) -> int:
    return int(round(epoch * 1000))


# --------------------------------------------------------------------------- source

@SOURCES.register("indexer")
class IndexerSource:
    """Alerts from the Wazuh indexer; `push_down` computes features server-side."""

    @classmethod
    def from_config(cls, config, scenario=None, *, resume: bool = True) -> "IndexerSource":
        return cls(config.indexer, config.layout.prefix)

    @property
    def key(self) -> tuple:
        return ("indexer", tuple(self.spec.hosts), self.spec.index)

    def __init__(self, spec: IndexerSpec, prefix: Path, *, client=None):
        self.spec = spec
        self.prefix = prefix
        self._client = client
        self._types: dict[str, set[str]] | None = None
        self.stats = SourceStats()
        self.last_paths: dict[str, str] = {}      # scenario -> "pushdown" or why it was read raw

    @property
    def client(self):
        if self._client is None:
            try:
                self._client = make_client(self.spec, self.prefix)
            except IndexerError as exc:
                raise SourceUnreadable(str(exc)) from None
        return self._client

    def _call(self, what: str, fn):
        try:
            return retrying(self.spec, fn, what)
        except IndexerError as exc:
            raise SourceUnreadable(str(exc)) from None

    def _search(self, body: dict, what: str) -> dict:
        return self._call(what, lambda: self.client.search(
            index=self.spec.index, body=body,
            params={"ignore_unavailable": "true", "allow_no_indices": "true", "request_cache": "false"}))

    def field_types(self, fields: Iterable[str]) -> dict[str, set[str]]:
        try:
            return field_types(self.client, self.spec, sorted(set(fields)))
        except IndexerError as exc:
            raise SourceUnreadable(str(exc)) from None

    def _buckets_per_request(self, scenario: Scenario, limit: int, reserved: int = 0) -> int:
        """Time buckets (or entity x time cells) one request may ask for; `reserved`: buckets
        the same request spends elsewhere."""
        # each time bucket holds one filter bucket per feature and one metric per non-count feature
        per_bucket = 1 + sum(2 if f.aggregation != "count" else 1 for f in scenario.features)
        limit = min(limit, (MAX_BUCKETS - reserved) // per_bucket)
        distinct = sum(1 for f in scenario.features if f.aggregation == "distinct")
        if not distinct:
            return limit
        return max(10, min(limit, REQUEST_HEAP_BYTES // (distinct * self.spec.precision_threshold * 8)))

    def _range(self, start: float, end: float) -> dict:
        return {"range": {self.spec.time_field: {"gte": _ms(start), "lt": _ms(end), "format": "epoch_millis"}}}

    # ------------------------------------------------------------------ pushdown
    # Each scenario's pushdown is a plan: a generator that yields a list of (request body,
    # what) and receives their answers. `_run_plans` sends the pending requests of every
    # plan in one `_msearch`, so all scenarios wait on the indexer together — one round
    # trip per phase (the span, the histograms, the first cells page of every scenario with
    # every entity and every ranking with a first page of cells; then the next page of each,
    # or the top entities' cells where a scenario has more entities than its top) instead
    # of one request after another.

    def push_down(self, aggregators: list[FeatureSink], start: float, end: float):
        """Compute on the indexer every aggregator it can; returns (the rest, (first, last, count))
        where first/last/count describe the alerts of [start, end)."""
        fields = {self.spec.time_field}
        for agg in aggregators:
            fields.update(scenario_fields(agg.scenario))
        types = self.field_types(fields)
        rest, plans = [], []
        for agg in aggregators:
            problems = mapping_problems(agg.scenario, types)
            if problems:
                raise SourceUnreadable(problems[0] + ".")
            reason = pushdown_reason(agg.scenario, types)
            if reason is not None:
                log.info("scenario %s: %s", agg.scenario.name, reason)
                self.last_paths[agg.scenario.name] = reason
                rest.append(agg)
                continue
            self.last_paths[agg.scenario.name] = "pushdown"
            plans.append(self._fill_plan(agg))
        span: list = []
        plans.insert(0, self._span_plan(start, end, span))
        self._run_plans(plans)
        return rest, span[0]

    def span(self, start: float, end: float) -> tuple[float | None, float | None, int]:
        span: list = []
        self._run_plans([self._span_plan(start, end, span)])
        return span[0]

    def _span_plan(self, start: float, end: float, out: list):
        body = {"size": 0, "track_total_hits": True, "query": self._range(start, end),
                "aggs": {"first": {"min": {"field": self.spec.time_field}},
                         "last": {"max": {"field": self.spec.time_field}}}}
        answer, = yield [(body, "reading the time span")]
        first = answer["aggregations"]["first"]["value"]
        last = answer["aggregations"]["last"]["value"]
        out.append((None if first is None else first / 1000.0, None if last is None else last / 1000.0,
                    int(answer["hits"]["total"]["value"])))

    def fill(self, agg: FeatureSink) -> None:
        """Put the indexer's feature values of agg's scenario and range into agg."""
        self._run_plans([self._fill_plan(agg)])

    def _fill_plan(self, agg: FeatureSink):
        if agg.scenario.entity is None:
            return self._fill_histogram(agg)
        return self._fill_entities(agg)

    def _run_plans(self, plans: list) -> None:
        with _collector_paused():
            self._run_plans_now(plans)

    def _run_plans_now(self, plans: list) -> None:
        pending = []
        for plan in plans:
            try:
                pending.append((plan, next(plan)))
            except StopIteration:
                pass
        while pending:
            requests = [request for _, batch in pending for request in batch]
            answers = [self._search(*requests[0])] if len(requests) == 1 else self._msearch(requests)
            still, at = [], 0
            for plan, batch in pending:
                mine = answers[at:at + len(batch)]
                answers[at:at + len(batch)] = [None] * len(batch)   # the plan alone holds its answers
                try:
                    still.append((plan, plan.send(mine)))
                except StopIteration:
                    pass
                del mine
                at += len(batch)
            # nothing of this round trip is held while the next one is asked for: a plan
            # that pages keeps at most the page it is using
            del answers, requests
            pending = still

    def _msearch(self, requests: list[tuple[dict, str]]) -> list[dict]:
        """Several searches in one round trip; a failed one fails all, as one clear sentence."""
        header = {"index": self.spec.index, "ignore_unavailable": True, "allow_no_indices": True,
                  "request_cache": False}
        lines = []
        for body, _ in requests:
            lines.append(header)
            lines.append(body)

        doing = " and ".join(dict.fromkeys(what for _, what in requests))
        failed = [doing]

        def call():
            from opensearchpy import exceptions as ox
            answer = self.client.msearch(body=lines)
            responses = answer["responses"]
            for response, (_, what) in zip(responses, requests):
                if "error" in response:
                    # raised like a failed search, so that 429/503 are retried like one
                    failed[0] = what
                    status = int(response.get("status") or 500)
                    error = response["error"]
                    kind = error.get("type", "error") if isinstance(error, dict) else str(error)
                    raise ox.HTTP_EXCEPTIONS.get(status, ox.TransportError)(status, kind, response)
            return responses
        try:
            return retrying(self.spec, call, doing)
        except IndexerError as exc:
            # name the search that failed, not every search of the round trip
            raise SourceUnreadable(str(exc).replace(f"({doing})", f"({failed[0]})", 1)) from None

    def _histogram_body(self, s: Scenario, lo: float, hi: float) -> dict:
        """date_histogram of [lo, hi) with the feature sub-aggregations."""
        # min_doc_count 1: an empty bucket would cross the network as a tree of zeros per
        # feature (most of a quiet scenario's answer); the aggregator's frame has its zeros already
        histogram = {"date_histogram": {"field": self.spec.time_field, "fixed_interval": f"{s.bucket_minutes}m",
                                        "time_zone": "UTC", "min_doc_count": 1},
                     "aggs": feature_aggs(s, self.spec.precision_threshold)}
        return {"size": 0, "query": {"bool": {"filter": [self._range(lo, hi), volume_query(s)]}},
                "aggs": {"t": histogram}}

    def _chunks(self, agg: FeatureSink, buckets: int) -> list[tuple[float, float]]:
        chunk = max(1, buckets) * agg.step
        out, lo = [], agg.start
        while lo < agg.end:
            out.append((lo, min(agg.end, lo + chunk)))
            lo += chunk
        return out

    def _fill_histogram(self, agg: FeatureSink):
        s = agg.scenario
        chunks = self._chunks(agg, self._buckets_per_request(s, self.spec.buckets_per_request))
        # the chunks do not depend on each other: several in one round trip
        for first in range(0, len(chunks), HISTOGRAM_CHUNKS_PER_ROUND):
            answers = yield [(self._histogram_body(s, lo, hi), f"computing the features of scenario {s.name}")
                             for lo, hi in chunks[first:first + HISTOGRAM_CHUNKS_PER_ROUND]]
            for answer in answers:
                for bucket in answer["aggregations"]["t"]["buckets"]:
                    index = int((bucket["key"] / 1000.0 - agg.start) // agg.step)
                    if bucket["doc_count"] and 0 <= index < agg.n_buckets:
                        agg.put(None, index, feature_values(s, bucket), bucket["doc_count"])

    def _composite(self, body_for, what: str, use, after: dict | None = None):
        """A plan: a composite aggregation "c", page after page (by after_key), from `after`
        if given. `use(answer)` takes each page's answer before the next page is asked for,
        and the answer is dropped then: the client holds one page at a time."""
        while True:
            body = body_for(after)
            answer, = yield [(body, what)]
            result = answer["aggregations"]["c"]
            use(answer)
            after = result.get("after_key")
            # a page that is not full is the last one: no request for an empty page
            last = len(result["buckets"]) < body["aggs"]["c"]["composite"]["size"] or after is None
            del answer, result
            if last:
                return

    def _fill_entities(self, agg: FeatureSink):
        s, step = agg.scenario, agg.step
        entity_field = s.entity.field
        base = [self._range(agg.start, agg.end), volume_query(s)]
        aggs = feature_aggs(s, self.spec.precision_threshold)
        what = f"computing the features of scenario {s.name}"
        page = self._buckets_per_request(s, COMPOSITE_PAGE)

        def cell_composite(size: int, after) -> dict:
            comp = {"size": size, "sources": [
                {"e": {"terms": {"field": entity_field}}},
                {"t": {"date_histogram": {"field": self.spec.time_field, "fixed_interval": f"{s.bucket_minutes}m",
                                          "time_zone": "UTC"}}}]}
            if after:
                comp["after"] = after
            return {"composite": comp, "aggs": aggs}

        def cells(filters: list):
            def body(after) -> dict:
                return {"size": 0, "query": {"bool": {"filter": filters}}, "aggs": {"c": cell_composite(page, after)}}
            return body

        def put_cells(buckets: list, wanted: set | None) -> None:
            """Each cell into agg as it comes; an entity's volume is the sum of its cells' alerts."""
            for bucket in buckets:
                entity = _entity_text(bucket["key"]["e"])
                if not entity or (wanted is not None and entity not in wanted):
                    continue
                index = int((bucket["key"]["t"] / 1000.0 - agg.start) // step)
                if 0 <= index < agg.n_buckets:
                    agg.put(entity, index, feature_values(s, bucket), bucket["doc_count"])

        def put_page(wanted: set | None):
            return lambda answer: put_cells(answer["aggregations"]["c"]["buckets"], wanted)

        if s.entity.top is None:
            # Every entity (top: all): no ranking, the cells' pages stream into agg from the
            # first round trip on, and agg ranks the entities by the volumes they carry.
            yield from self._composite(cells(base), what, put_page(None))
            return

        # A finite top needs every entity's volume first (entity -> count: small), paged by
        # after_key. The first ranking page also asks for the first page of cells: when that
        # page is the whole ranking and there are no more entities than the top (a small
        # manager), every entity is wanted and those cells are put at once, further pages
        # following. Otherwise they are dropped before the next request (at most one page of
        # extra work) and the top entities' cells are asked for.
        early_page = self._buckets_per_request(s, COMPOSITE_PAGE, reserved=COMPOSITE_PAGE)

        def ranking(after) -> dict:
            comp = {"size": COMPOSITE_PAGE, "sources": [{"e": {"terms": {"field": entity_field}}}]}
            if after:
                comp["after"] = after
            body = {"size": 0, "query": {"bool": {"filter": base}}, "aggs": {"c": {"composite": comp}}}
            if not after:
                body["aggs"]["x"] = cell_composite(early_page, None)
            return body
        volumes: dict[str, int] = {}
        early: list = []          # [after_key or None] once the early cells page has been put

        def rank(answer: dict) -> None:
            result = answer["aggregations"]["c"]
            for bucket in result["buckets"]:
                entity = _entity_text(bucket["key"]["e"])
                if entity:
                    volumes[entity] = volumes.get(entity, 0) + bucket["doc_count"]
            cells_page = answer["aggregations"].get("x")
            whole = len(result["buckets"]) < COMPOSITE_PAGE or result.get("after_key") is None
            if cells_page is not None and whole and len(volumes) <= s.entity.top:
                put_cells(cells_page["buckets"], None)
                full = len(cells_page["buckets"]) >= early_page
                early.append(cells_page.get("after_key") if full else None)
        yield from self._composite(ranking, f"ranking the entities of scenario {s.name}", rank)
        if not volumes:
            return
        if early:
            if early[0]:
                yield from self._composite(cells(base), what, put_page(None), after=early[0])
            return
        if len(volumes) <= s.entity.top:
            top, filters = None, base            # every entity: no list of names in the query
        else:
            ranked = sorted(volumes, key=lambda e: (-volumes[e], e))[:s.entity.top]
            top, filters = set(ranked), base + [{"terms": {entity_field: ranked}}]
        volumes.clear()
        yield from self._composite(cells(filters), what, put_page(top))

    # ------------------------------------------------------------------ raw documents
    def read(self, start: float, end: float, cursor=None, stats: SourceStats | None = None,
             slack_seconds: float = 0.0, fields: Iterable[str] | None = None) -> Iterator[tuple[float, dict]]:
        """Every alert of [start, end) in time order, as (epoch seconds, document) — PIT +
        search_after, so there is no 10,000-hit cap. `cursor` and `slack_seconds` exist for
        the alerts-file interface: the indexer is queried by time, not by file offset."""
        stats = stats if stats is not None else SourceStats()
        self.stats = stats
        pit = self._call("opening a point in time", lambda: self.client.transport.perform_request(
            "POST", f"/{self.spec.index}/_search/point_in_time",
            params={"keep_alive": PIT_KEEP_ALIVE, "allow_partial_pit_creation": "false"}))["pit_id"]
        try:
            # _id breaks ties of equal timestamps (OpenSearch 2.19 has no _shard_doc), so no page skips one
            body: dict = {"size": self.spec.page_size, "query": self._range(start, end),
                          "pit": {"id": pit, "keep_alive": PIT_KEEP_ALIVE},
                          "sort": [{self.spec.time_field: "asc"}, {"_id": "asc"}],
                          "track_total_hits": False}
            if fields is not None:
                body["_source"] = sorted(set(fields) | {self.spec.time_field})
            while True:
                answer = self._call("reading alerts", lambda: self.client.transport.perform_request(
                    "POST", "/_search", body=body))
                hits = answer["hits"]["hits"]
                if not hits:
                    return
                body["pit"]["id"] = answer.get("pit_id", pit)
                for hit in hits:
                    doc = hit.get("_source") or {}
                    stats.lines += 1
                    text = doc.get(self.spec.time_field)
                    try:
                        ts = wazuh_timestamp(text) if isinstance(text, str) else float(hit["sort"][0]) / 1000.0
                    except (ValueError, TypeError):
                        ts = float(hit["sort"][0]) / 1000.0
                    if not start <= ts < end:
                        stats.outside_range += 1
                        continue
                    stats.alerts += 1
                    yield ts, doc
                body["search_after"] = hits[-1]["sort"]
        finally:
            try:
                self.client.transport.perform_request("DELETE", "/_search/point_in_time", body={"pit_id": [pit]})
            except Exception as exc:  # the PIT expires by itself after keep_alive
                log.info("closing the point in time failed (%s); it expires by itself", type(exc).__name__)


@contextmanager
def _collector_paused():
    """Python's cyclic garbage collector off while the answers are parsed and used: they are
    trees of small dicts without cycles, and building them in a process with pandas loaded
    made the collector rescan everything several times (5x the JSON parse itself)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _entity_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
