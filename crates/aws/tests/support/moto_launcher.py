"""moto's server with the three things moto lacks for Nodewright's AWS tests.

1. Reserved SSM parameters: `POST /_ssm {"region": R, "params": {name: value}}` writes names under
   `/aws/service/...` straight into moto's SSM backend (PutParameter refuses them, as AWS does),
   so tests can publish EKS-optimized and Bottlerocket AMI aliases.
2. Capacity errors: `POST /_faults {"rules": [...]}` replaces the fault rules, `DELETE /_faults`
   clears them. A rule `{"action": "CreateFleet", "ice": [{"instance_type"?, "availability_zone"?,
   "subnet_id"?, "code"?}]}` removes matching overrides before moto sees the request and reports
   them in the response's `errorSet` (code `InsufficientInstanceCapacity` unless given), the way
   EC2 Fleet reports pools without capacity; moto launches from the remaining overrides.
3. API errors: a rule `{"action": A, "error": {"status": S, "code": C, "message": M}, "times": N}`
   answers the next N calls of A (all, without `times`) with that error, as XML for the EC2 query
   protocol or JSON for awsJson services.
4. A smaller catalogue: `--instance-types 'm5.*,c5.*'` keeps only the instance types matching
   those patterns, so DescribeInstanceTypes answers in milliseconds instead of seconds.
5. The Price List API, which moto lacks: a rule `{"action": "GetProducts", "json": {...}}` answers
   with that body; without one, GetProducts answers an empty price list.
6. Capacity reservations, which moto lacks: `POST /_capacity_reservations {"reservations": [{"id",
   "instance_type", "availability_zone", "owner_id", "state"?, "instance_match_criteria"?,
   "reservation_type"?, "end_date"?, "interruptible"?, "tags"?}]}` adds reservations (replacing
   those of the same id) that DescribeCapacityReservations answers, honouring
   `CapacityReservationId.N` and the filters state, owner-id, instance-match-criteria, tag:K and
   tag-key. A reservation's `count` (default 1) is its size; DescribeCapacityReservations reports
   it as totalInstanceCount with what is left as availableInstanceCount.
7. Launches into reservations, which moto ignores: a CreateFleet whose launch template targets a
   reservation (CapacityReservationSpecification with preference capacity-reservations-only)
   takes instances from it, or fails those overrides with ReservationCapacityExceeded when none
   is left (a fleet asking for more than is left gets what is left and that error for the rest);
   TerminateInstances gives them back. `GET /_launches` lists every CreateFleet as
   {"default_target_capacity_type", "reservations": [targeted id per config], "preferences",
   "market_types", "instances"}.

Everything else is moto's own app. Usage: python moto_launcher.py --host 127.0.0.1 --port PORT
"""

import argparse
import io
import json
import os
import re
import sys
import threading
from urllib.parse import parse_qsl, urlencode
from xml.sax.saxutils import escape

from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.utils import utcnow
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.ssm.models import Parameter, ssm_backends
from werkzeug.serving import run_simple

RULES = []
LOCK = threading.Lock()
RESERVATIONS = {}
# Launches into reservations: instance ID -> reservation ID, and every CreateFleet seen.
RESERVED_INSTANCES = {}
LAUNCHES = []


def seed_ssm(request):
    backend = ssm_backends[DEFAULT_ACCOUNT_ID][request["region"]]
    for name, value in request["params"].items():
        versions = backend._parameters[name]
        versions.append(
            Parameter(
                account_id=DEFAULT_ACCOUNT_ID,
                name=name,
                value=value,
                parameter_type="String",
                description=None,
                allowed_pattern=None,
                keyid=None,
                last_modified_date=utcnow(),
                version=len(versions) + 1,
                data_type="text",
            )
        )


def take_rule(action, kind):
    """The first rule for `action` carrying `kind`, counting down its `times`."""
    with LOCK:
        for rule in RULES:
            if rule.get("action") == action and kind in rule:
                if "times" in rule:
                    if rule["times"] <= 0:
                        continue
                    rule["times"] -= 1
                return rule
    return None


def error_response(start_response, error, json_protocol):
    status = int(error.get("status", 400))
    code, message = error["code"], error.get("message", error["code"])
    if json_protocol:
        body = json.dumps({"__type": code, "message": message}).encode()
        content_type = "application/x-amz-json-1.1"
    else:
        body = (
            f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}"
            "</Message></Error></Errors><RequestID>injected</RequestID></Response>"
        ).encode()
        content_type = "text/xml"
    start_response(f"{status} Injected", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def split_overrides(params, pools):
    """Removes the overrides matching an `ice` pool; returns the new params and the removed ones."""
    overrides = {}
    for key, value in params:
        parts = key.split(".")
        if len(parts) == 5 and parts[0] == "LaunchTemplateConfigs" and parts[2] == "Overrides":
            overrides.setdefault((int(parts[1]), int(parts[3])), {})[parts[4]] = value
    removed = []
    for key, override in overrides.items():
        for pool in pools:
            if "config" in pool and pool["config"] != key[0]:
                continue
            if all(override.get(field) == pool[name] for name, field in (
                ("instance_type", "InstanceType"), ("availability_zone", "AvailabilityZone"), ("subnet_id", "SubnetId"),
            ) if name in pool):
                removed.append((key, override, pool.get("code", "InsufficientInstanceCapacity")))
                break
    gone = {key for key, _, _ in removed}
    # Rebuild the configs: overrides renumbered, and a config left without overrides dropped
    # (moto would launch from its template alone, which EC2 never does for a fleet with overrides).
    had_overrides = {config for config, _ in overrides}
    kept_overrides = {}
    for (config, index), override in sorted(overrides.items()):
        if (config, index) not in gone:
            kept_overrides.setdefault(config, []).append(override)
    configs = sorted({int(k.split(".")[1]) for k, _ in params if k.startswith("LaunchTemplateConfigs.")})
    surviving = [c for c in configs if c in kept_overrides or c not in had_overrides]
    kept = [(k, v) for k, v in params if not k.startswith("LaunchTemplateConfigs.")]
    for new_index, config in enumerate(surviving, start=1):
        prefix = f"LaunchTemplateConfigs.{config}."
        for key, value in params:
            if key.startswith(prefix) and not key.startswith(prefix + "Overrides."):
                kept.append((f"LaunchTemplateConfigs.{new_index}.{key[len(prefix):]}", value))
        for position, override in enumerate(kept_overrides.get(config, []), start=1):
            for field, value in override.items():
                kept.append((f"LaunchTemplateConfigs.{new_index}.Overrides.{position}.{field}", value))
    lifecycle = "spot" if ("TargetCapacitySpecification.DefaultTargetCapacityType", "spot") in params else "on-demand"
    template = {}
    for key, value in params:
        parts = key.split(".")
        if len(parts) == 4 and parts[2] == "LaunchTemplateSpecification":
            template.setdefault(int(parts[1]), {})[parts[3]] = value
    items = []
    for (config, _), override, code in removed:
        spec = "".join(
            f"<{name[0].lower() + name[1:]}>{escape(value)}</{name[0].lower() + name[1:]}>"
            for name, value in template.get(config, {}).items()
        )
        fields = "".join(f"<{name[0].lower() + name[1:]}>{escape(value)}</{name[0].lower() + name[1:]}>" for name, value in override.items())
        items.append(
            f"<item><launchTemplateAndOverrides><launchTemplateSpecification>{spec}</launchTemplateSpecification>"
            f"<overrides>{fields}</overrides></launchTemplateAndOverrides><lifecycle>{lifecycle}</lifecycle>"
            f"<errorCode>{escape(code)}</errorCode><errorMessage>There is no {escape(override.get('InstanceType', ''))} "
            f"capacity in the requested pool (injected)</errorMessage></item>"
        )
    has_remaining = len(overrides) > len(removed)
    return kept, "".join(items), has_remaining


def indexed(params, prefix):
    """The values of `prefix.N` query parameters, in order of N."""
    found = []
    for key, value in params:
        if key.startswith(prefix + ".") and key[len(prefix) + 1:].isdigit():
            found.append((int(key[len(prefix) + 1:]), value))
    return [value for _, value in sorted(found)]


def query_filters(params):
    """`Filter.N.Name` / `Filter.N.Value.M` as {name: [values]}."""
    names, values = {}, {}
    for key, value in params:
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "Filter" and parts[2] == "Name":
            names[parts[1]] = value
        elif len(parts) == 4 and parts[0] == "Filter" and parts[2] == "Value":
            values.setdefault(parts[1], []).append(value)
    return {name: values.get(index, []) for index, name in names.items()}


def reservation_matches(reservation, ids, filters):
    if ids and reservation["id"] not in ids:
        return False
    tags = reservation.get("tags", {})
    for name, values in filters.items():
        if name == "state":
            actual = [reservation.get("state", "active")]
        elif name == "owner-id":
            actual = [reservation["owner_id"]]
        elif name == "instance-match-criteria":
            actual = [reservation.get("instance_match_criteria", "open")]
        elif name == "tag-key":
            actual = list(tags)
        elif name.startswith("tag:"):
            actual = [tags[name[4:]]] if name[4:] in tags else []
        else:
            raise ValueError(f"filter {name} is not emulated")
        if not set(actual) & set(values):
            return False
    return True


def describe_capacity_reservations(params):
    ids = indexed(params, "CapacityReservationId")
    filters = query_filters(params)
    with LOCK:
        selected = [r for r in RESERVATIONS.values() if reservation_matches(r, ids, filters)]
    items = []
    for r in selected:
        fields = [
            ("capacityReservationId", r["id"]),
            ("ownerId", r["owner_id"]),
            ("instanceType", r["instance_type"]),
            ("availabilityZone", r["availability_zone"]),
            ("state", r.get("state", "active")),
            ("instanceMatchCriteria", r.get("instance_match_criteria", "open")),
            ("reservationType", r.get("reservation_type", "default")),
            ("endDate", r.get("end_date")),
            ("interruptible", None if "interruptible" not in r else str(r["interruptible"]).lower()),
            ("totalInstanceCount", str(r.get("count", 1))),
            ("availableInstanceCount", str(r.get("available", r.get("count", 1)))),
        ]
        text = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields if value is not None)
        tags = "".join(
            f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>" for k, v in r.get("tags", {}).items()
        )
        items.append(f"<item>{text}<tagSet>{tags}</tagSet></item>")
    return (
        '<DescribeCapacityReservationsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
        f"<requestId>emulated</requestId><capacityReservationSet>{''.join(items)}</capacityReservationSet>"
        "</DescribeCapacityReservationsResponse>"
    ).encode()


def region_of(environ):
    match = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else "us-east-1"


def fleet_reservations(params, region):
    """Per launch template config of a CreateFleet: (config index, targeted reservation or None,
    preference, market type), from the templates' latest versions in moto."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    found = []
    for key, name in params:
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == "LaunchTemplateConfigs" and parts[3] == "LaunchTemplateName":
            try:
                data = backend.get_launch_template_by_name(name).latest_version().data
            except Exception:  # moto answers the fleet's own error for a missing template
                data = {}
            spec = data.get("CapacityReservationSpecification") or {}
            target = (spec.get("CapacityReservationTarget") or {}).get("CapacityReservationId")
            market = (data.get("InstanceMarketOptions") or {}).get("MarketType")
            found.append((int(parts[1]), target, spec.get("CapacityReservationPreference"), market))
    return sorted(found)


def reservation_refusals(targets):
    """`ice` pools for configs whose reservation has nothing left."""
    pools = []
    with LOCK:
        for config, target, preference, _ in targets:
            if target and preference == "capacity-reservations-only":
                reservation = RESERVATIONS.get(target)
                if reservation is None or reservation.get("available", reservation.get("count", 1)) <= 0:
                    pools.append({"config": config, "code": "ReservationCapacityExceeded"})
    return pools


def cap_to_reservation(params, targets):
    """A fleet asking one reservation for more instances than it has left gets what is left and
    a ReservationCapacityExceeded error for the rest, as EC2 answers; returns the new params and
    the error items."""
    reserved = [t for _, t, p, _ in targets if t and p == "capacity-reservations-only"]
    if len(reserved) != 1 or reserved[0] not in RESERVATIONS:
        return params, ""
    with LOCK:
        reservation = RESERVATIONS[reserved[0]]
        left = reservation.get("available", reservation.get("count", 1))
    asked = int(dict(params).get("TargetCapacitySpecification.TotalTargetCapacity", "1"))
    if left <= 0 or asked <= left:
        return params, ""
    params = [(k, str(left) if k == "TargetCapacitySpecification.TotalTargetCapacity" else v) for k, v in params]
    first = dict(params)
    override = "".join(
        f"<{tag}>{escape(first[f'LaunchTemplateConfigs.1.Overrides.1.{field}'])}</{tag}>"
        for field, tag in (("InstanceType", "instanceType"), ("AvailabilityZone", "availabilityZone"), ("SubnetId", "subnetId"))
        if f"LaunchTemplateConfigs.1.Overrides.1.{field}" in first
    )
    item = (
        f"<item><launchTemplateAndOverrides><overrides>{override}</overrides></launchTemplateAndOverrides>"
        "<lifecycle>on-demand</lifecycle><errorCode>ReservationCapacityExceeded</errorCode>"
        f"<errorMessage>{escape(reserved[0])} has {left} instances left (emulated)</errorMessage></item>"
    )
    return params, item * (asked - left)


def record_launch(params, targets, answer):
    """Takes launched instances from their reservations and records the call."""
    instances = re.findall(r"i-[0-9a-f]{8,17}", b"".join(re.findall(rb"<instanceIds>.*?</instanceIds>", answer, re.S)).decode())
    reserved = [t for _, t, p, _ in targets if t and p == "capacity-reservations-only"]
    with LOCK:
        if len(reserved) == 1 and reserved[0] in RESERVATIONS:
            reservation = RESERVATIONS[reserved[0]]
            left = reservation.get("available", reservation.get("count", 1))
            reservation["available"] = max(0, left - len(instances))
            for instance in instances:
                RESERVED_INSTANCES[instance] = reserved[0]
        LAUNCHES.append({
            "default_target_capacity_type": dict(params).get("TargetCapacitySpecification.DefaultTargetCapacityType"),
            "reservations": [t for _, t, _, _ in targets],
            "preferences": [p for _, _, p, _ in targets],
            "market_types": [m for _, _, _, m in targets],
            "instances": instances,
        })


def release_reservations(params):
    with LOCK:
        for instance in indexed(params, "InstanceId"):
            reservation = RESERVATIONS.get(RESERVED_INSTANCES.pop(instance, None))
            if reservation is not None:
                left = reservation.get("available", reservation.get("count", 1))
                reservation["available"] = min(reservation.get("count", 1), left + 1)


class Launcher:
    def __init__(self):
        self.moto = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if path == "/_ssm" and method == "POST":
            seed_ssm(json.loads(body))
            return self.ok(start_response)
        if path == "/_faults":
            with LOCK:
                RULES.clear()
                if method == "POST":
                    RULES.extend(json.loads(body)["rules"])
            return self.ok(start_response)
        if path == "/_launches" and method == "GET":
            with LOCK:
                return self.json_answer(start_response, LAUNCHES)
        if path == "/_capacity_reservations" and method == "POST":
            with LOCK:
                for reservation in json.loads(body)["reservations"]:
                    RESERVATIONS[reservation["id"]] = reservation
            return self.ok(start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        params = parse_qsl(body.decode(errors="replace"), keep_blank_values=True) if not target else []
        action = target.split(".")[-1] if target else dict(params).get("Action", "")
        rule = take_rule(action, "error")
        if rule:
            return error_response(start_response, rule["error"], bool(target))
        rule = take_rule(action, "json")
        if rule or action == "GetProducts":
            answer = rule["json"] if rule else {"FormatVersion": "aws_v1", "PriceList": []}
            return self.json_answer(start_response, answer)
        if action == "DescribeCapacityReservations":
            answer = describe_capacity_reservations(params)
            start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(answer)))])
            return [answer]
        errors = ""
        targets = []
        if action == "TerminateInstances":
            release_reservations(params)
        if action == "CreateFleet":
            targets = fleet_reservations(params, region_of(environ))
            rule = take_rule(action, "ice")
            pools = (rule["ice"] if rule else []) + reservation_refusals(targets)
            if pools:
                params, errors, has_remaining = split_overrides(params, pools)
                if not has_remaining:
                    record_launch(params, targets, b"")
                    body = (
                        '<CreateFleetResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">'
                        f"<requestId>injected</requestId><fleetId>fleet-injected</fleetId><errorSet>{errors}</errorSet>"
                        "<fleetInstanceSet/></CreateFleetResponse>"
                    ).encode()
                    start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
                    return [body]
                body = urlencode(params).encode()
            params, capped = cap_to_reservation(params, targets)
            if capped:
                errors += capped
                body = urlencode(params).encode()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        if action != "CreateFleet":
            return self.moto(environ, start_response)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        answer = b"".join(self.moto(environ, capture))
        record_launch(params, targets, answer)
        closing = b"</CreateFleetResponse>"
        if errors and closing in answer:
            answer = answer.replace(closing, f"<errorSet>{errors}</errorSet>".encode() + closing)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], headers + [("Content-Length", str(len(answer)))])
        return [answer]

    @staticmethod
    def json_answer(start_response, answer):
        body = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def ok(start_response):
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
        return [b"{}"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--instance-types", default="")
    args = parser.parse_args()
    if args.instance_types:
        from fnmatch import fnmatch

        from moto.ec2.models.instance_types import InstanceTypeBackend

        patterns = args.instance_types.split(",")
        InstanceTypeBackend.instance_types = [
            t for t in InstanceTypeBackend.instance_types if any(fnmatch(t.name, p) for p in patterns)
        ]
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # The test harness holds our stdin open; when its process exits, however it exits, stdin
    # closes and the server goes with it, so no emulator outlives its tests.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    run_simple(args.host, args.port, Launcher(), threaded=True, use_reloader=False)
