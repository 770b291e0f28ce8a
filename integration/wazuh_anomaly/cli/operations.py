"""The commands an admin uses to operate the detector for months: `models`, `suppress` and
`feedback`. Each prints plain lines and raises a project error (one sentence) for
anything the user typed wrong."""
from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from ..core.errors import ConfigError
from .common import command, context, group


def _utc(text: str | None) -> datetime | None:
    if not text:
        return None
    from ..ops.runner import parse_time
    return datetime.fromtimestamp(parse_time(text), tz=timezone.utc)


def _scenario(scenarios, name: str | None):
    if name is None:
        return None
    known = {s.name: s for s in scenarios}
    if name not in known:
        raise ConfigError(f"no scenario named '{name}'; known: {', '.join(sorted(known)) or 'none'}.")
    return known[name]


# --------------------------------------------------------------------------- suppress

def cmd_suppress_add(args: argparse.Namespace) -> int:
    from ..ops.suppression import add_suppression, new_suppression
    _, config, scenarios, _ = context(args)
    scenario = _scenario(scenarios, args.scenario)
    if args.feature and scenario is not None and args.feature not in scenario.feature_names:
        raise ConfigError(f"scenario '{scenario.name}' has no feature '{args.feature}'; its features: "
                          f"{', '.join(scenario.feature_names)}.")
    if args.entity and scenario is not None and scenario.entity is None:
        raise ConfigError(f"scenario '{scenario.name}' is not split by entity; drop --entity.")
    s = new_suppression(reason=args.reason or "", scenario=args.scenario, entity=args.entity,
                        feature=args.feature, start=_utc(args.start), end=_utc(args.end), every=args.every,
                        expires=_utc(args.expires))
    add_suppression(config, s)
    print(f"added suppression {s.id}: {_describe(s)}")
    return 0


def cmd_suppress_remove(args: argparse.Namespace) -> int:
    from ..ops.suppression import remove_suppression
    _, config, _, _ = context(args)
    s = remove_suppression(config, args.id)
    print(f"removed suppression {s.id}: {_describe(s)}")
    return 0


def cmd_suppress_list(args: argparse.Namespace) -> int:
    from ..ops.suppression import load_suppressions
    _, config, _, _ = context(args)
    items = load_suppressions(config)
    if args.json:
        print(json.dumps([s.to_json() for s in items], indent=1))
        return 0
    if not items:
        print("no suppressions; add one with 'wazuh-anomaly suppress add --scenario S --entity E "
              "--every \"sun 02:00-04:00\" --reason TEXT' (see 'wazuh-anomaly suppress add --help').")
    now = datetime.now(timezone.utc)
    for s in items:
        expired = " (expired)" if s.expires and s.expires <= now else ""
        print(f"{s.id}{expired}: {_describe(s)}")
    return 0


def _describe(s) -> str:
    scope = s.scenario or "every scenario"
    if s.entity:
        scope += f", entity {s.entity}"
    if s.feature:
        scope += f", led by feature {s.feature}"
    expires = f", expires {s.expires:%Y-%m-%d %H:%M} UTC" if s.expires else ""
    by = f" (by {s.created_by})" if s.created_by else ""
    return f"{scope}; {s.when()}{expires}; reason: {s.reason}{by}"


# --------------------------------------------------------------------------- feedback

def cmd_feedback(args: argparse.Namespace) -> int:
    from ..ops.feedback import load_feedback, record_feedback
    _, config, _, _ = context(args)
    if args.list:
        items = sorted(load_feedback(config).values(), key=lambda f: f.window_start)
        if not items:
            print("no feedback yet; give some with 'wazuh-anomaly feedback ID false-positive|true-positive'.")
        for f in items:
            entity = f" {f.entity_field}={f.entity}" if f.entity else ""
            note = f" - {f.note}" if f.note else ""
            print(f"{f.id} {f.verdict}: {f.scenario}{entity} {f.window_start:%Y-%m-%d %H:%M} "
                  f"({f.severity}){note}")
        return 0
    if not args.id or not args.verdict:
        raise ConfigError("give the anomaly id and a verdict: 'wazuh-anomaly feedback ID false-positive' "
                          "(or --list).")
    f = record_feedback(config, config.anomalies_file, args.id, args.verdict, args.note or "")
    entity = f" {f.entity_field}={f.entity}" if f.entity else ""
    then = (" its window is left out of the next training." if f.false_positive
            else " it stays in the training data as it is.")
    print(f"recorded {f.verdict} for {f.id} ({f.scenario}{entity} {f.window_start:%Y-%m-%d %H:%M} UTC);{then}")
    return 0


# --------------------------------------------------------------------------- registration

def register(sub) -> None:
    """Adds `suppress`, `feedback` and `models`."""
    act = group(sub, "suppress", "silence known-benign anomalies (still written, flagged, level 0)",
                dest="suppress_command")
    a = command(act, "add", cmd_suppress_add, "add a suppression (one window or a recurring maintenance window)")
    a.add_argument("--scenario", help="only this scenario (default: every scenario)")
    a.add_argument("--entity", help="only this entity value (e.g. an agent name or source address)")
    a.add_argument("--feature", help="only anomalies led by this feature (their top contributor)")
    a.add_argument("--from", dest="start", help="window start (ISO 8601, UTC if no zone)")
    a.add_argument("--to", dest="end", help="window end (ISO 8601)")
    a.add_argument("--every", help="recurring window in UTC: 'sun 02:00-04:00', 'mon-fri 22:00-23:30', "
                                   "'daily 01:00-01:30'")
    a.add_argument("--reason", required=True, help="why this is benign (written with each suppressed anomaly)")
    a.add_argument("--expires", help="stop covering anomalies from this time on (ISO 8601)")
    command(act, "list", cmd_suppress_list, "list suppressions").add_argument(
        "--json", action="store_true", help="print the suppressions as JSON")
    command(act, "remove", cmd_suppress_remove, "remove a suppression by id").add_argument(
        "id", help="the suppression's id (see 'wazuh-anomaly suppress list')")

    p = command(sub, "feedback", cmd_feedback, "mark an anomaly false-positive or true-positive")
    p.add_argument("id", nargs="?", help="the anomaly id (data.anomaly.id of the alert)")
    p.add_argument("verdict", nargs="?", choices=("false-positive", "true-positive"))
    p.add_argument("--note", help="free text kept with the verdict")
    p.add_argument("--list", action="store_true", help="list the verdicts given so far")

    act = group(sub, "models", "list, inspect or roll back the kept model versions", dest="models_command")
    a = command(act, "list", cmd_models, "kept versions per scenario (* marks the current one)")
    a.add_argument("--scenario", help="only this scenario")
    a.add_argument("--json", action="store_true", help="print the versions as JSON")
    a = command(act, "show", cmd_models, "what one version was trained on (default: the current one)")
    a.add_argument("--scenario", required=True)
    a.add_argument("--version")
    a.add_argument("--json", action="store_true", help="print meta.json as it is")
    a = command(act, "rollback", cmd_models, "switch to an older version (default: the one before the current)")
    a.add_argument("--scenario", required=True)
    a.add_argument("--version")


def cmd_models(args: argparse.Namespace) -> int:
    # lifecycle needs pandas and numpy: imported only when a models command runs, so
    # that light commands (netflow, realtime) never pay for them.
    from ..core.errors import ModelError
    from ..ops.lifecycle import current_version, list_models, list_versions, read_meta, rollback
    _, config, scenarios, _ = context(args)
    known = {s.name: s for s in scenarios}
    names = [args.scenario] if args.scenario else sorted(known)
    for name in names:
        if name not in known:
            raise ConfigError(f"no scenario named '{name}'; known: {', '.join(sorted(known)) or 'none'}.")
    if args.models_command == "list":
        rows = {n: list_models(config.models_dir, n) for n in names}
        if args.json:
            print(json.dumps(rows, indent=1))
            return 0
        for name, versions in rows.items():
            print(f"{name}: {len(versions)} version(s) kept (run.keep_models {config.run.keep_models})")
            for row in versions:
                mark = "*" if row["current"] else " "
                if "error" in row:
                    print(f" {mark} {row['version']}  unreadable: {row['error']}")
                    continue
                excluded = f", {row['excluded_buckets']} excluded" if row.get("excluded_buckets") else ""
                print(f" {mark} {row['version']}  trained {row['trained_at'][:16]} on {row['trained_from'][:16]} .. "
                      f"{row['trained_to'][:16]} ({row['buckets']} buckets{excluded}; {'+'.join(row['detectors'])})")
        return 0
    if not args.scenario:
        raise ConfigError(f"'models {args.models_command}' needs --scenario NAME.")
    scenario = known[args.scenario]
    if args.models_command == "show":
        version = args.version or current_version(config.models_dir, scenario.name)
        if not version or version not in list_versions(config.models_dir, scenario.name):
            raise ModelError(f"scenario {scenario.name}: no model version '{version}'; see 'wazuh-anomaly models list'.")
        meta = read_meta(config.models_dir, scenario.name, version)
        if args.json:
            print(json.dumps(meta, indent=1))
            return 0
        print(f"{scenario.name} {version}{' (current)' if version == current_version(config.models_dir, scenario.name) else ''}")
        for key in ("trained_at", "trained_from", "trained_to", "buckets", "excluded_buckets", "features",
                    "calendar", "entities", "detectors", "skipped_detectors", "data_hash", "wazuh_anomaly"):
            if meta.get(key) not in (None, [], {}):
                print(f"  {key.replace('_', ' ')}: {meta[key]}")
        for detector, cals in (meta.get("calibration") or {}).items():
            pooled = cals.get("*", {})
            print(f"  {detector} threshold: {pooled.get('threshold', 0):.4g} (median {pooled.get('center', 0):.4g}, "
                  f"{len(cals) - 1} entity thresholds)")
        if meta.get("exclusions"):
            print(f"  excluded from training: {', '.join(meta['exclusions'][:10])}")
        return 0
    old, new = rollback(config, scenario, args.version)
    print(f"{scenario.name}: current model switched from {old} to {new}; the next run scores with it "
          f"(retraining is due {scenario.training.retrain_every_days:g} days from now).")
    return 0

