#!/usr/bin/env python3
"""Lints and renders a chart with the Helm v4 SDK (PyPI helm-python-sdk), for the chart tests.

    render.py CHART_DIR [VALUES_FILE] --release NAME --namespace NS [--stream]

Prints one JSON object: {"lint": Helm's lint report, "schema_error": null or the message of
values.schema.json's rejection, "render_error": null or the template's error, "manifests":
{template path: rendered text}}. With --stream, prints instead the YAML stream `kubectl apply -f`
takes (the chart's CRDs, then the objects in Helm's install order), as deploy/nodewright.yaml is
made. Exits non-zero only when the chart cannot be loaded (or, with --stream, not rendered).
"""

import argparse
import json
import sys

import helm_python as helm


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("chart")
    parser.add_argument("values", nargs="?")
    parser.add_argument("--release", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()

    values = {}
    if args.values:
        with open(args.values, encoding="utf-8") as file:
            values = helm.values_from_yaml(file.read()) or {}

    chart = helm.Chart.load(args.chart)
    report = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
    try:
        chart.validate_schema(chart.merge_values(values))
        schema_error = None
    except helm.HelmValuesError as error:
        schema_error = str(error)
    manifests = {}
    render_error = None
    if schema_error is None:
        try:
            manifests = chart.render(
                values, name=args.release, namespace=args.namespace, is_install=True
            )
        except helm.HelmRenderError as error:
            render_error = str(error)
    if args.stream:
        if schema_error or render_error:
            print(schema_error or render_error, file=sys.stderr)
            return 1
        sys.stdout.write(stream(chart, manifests))
        return 0
    json.dump(
        {
            "lint": report,
            "schema_error": schema_error,
            "render_error": render_error,
            "manifests": manifests,
        },
        sys.stdout,
    )
    return 0


# The kinds this chart renders, in the order Helm installs them (Helm's InstallOrder).
INSTALL_ORDER = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "ServiceMonitor",
]


def stream(chart, manifests) -> str:
    """The CRDs, then each rendered document, ordered as Helm installs them."""
    documents = []
    for crd in sorted(chart.crds, key=lambda c: c["filename"]):
        documents.append((-1, crd["filename"], crd["data"].strip()))
    for path in sorted(manifests):
        for text in manifests[path].split("\n---"):
            text = text.strip()
            if not text or all(line.startswith("#") for line in text.splitlines()):
                continue
            kind = next(
                line.split(":", 1)[1].strip()
                for line in text.splitlines()
                if line.startswith("kind:")
            )
            documents.append((INSTALL_ORDER.index(kind), path, text))
    documents.sort(key=lambda d: (d[0], d[1]))
    return "".join(f"---\n# Source: {source}\n{text}\n" for _, source, text in documents)


if __name__ == "__main__":
    sys.exit(main())
