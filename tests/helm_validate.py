#!/usr/bin/env python3
"""Validates Kubernetes objects against their schemas; used by tests/suite/deploy/helm.rs.

    python3 tests/helm_validate.py --kubernetes-version 1.31.0 \
        --crd-schemas tests/testdata/crd-schemas rendered.yaml...

* Kubernetes kinds: PyPI's kubernetes-validate, strict (an unknown field is an error).
* prometheus-operator kinds (monitoring.coreos.com): the CRD's openAPIV3Schema vendored in
  --crd-schemas as <kind>-<group>-<version>.json (tests/testdata/crd-schemas/README.md), made
  strict the same way (additionalProperties: false wherever the schema lists properties and
  does not preserve unknown fields), and their metadata against the Kubernetes ObjectMeta.
* Any other object, or one whose kind has no schema, is an error (kubernetes-validate's own
  command line only warns).

Prints one line per object, OK or ERROR, and exits 0 when every object is valid, 1 otherwise.
"""

import argparse
import copy
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml


def strict(schema):
    """The schema with additionalProperties: false on every object that lists properties."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for key, value in node.items():
                if key == "properties":
                    for sub in value.values():
                        walk(sub)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return schema


def crd_schema(directory, api_version, kind):
    group, _, version = api_version.rpartition("/")
    path = os.path.join(directory, "%s-%s-%s.json" % (kind.lower(), group.split(".")[0], version))
    if not os.path.isfile(path):
        return None, path
    with open(path) as f:
        return strict(json.load(f)), path


def errors_of(obj, args):
    """The validation errors of one object, as strings."""
    api_version = obj.get("apiVersion", "")
    kind = obj.get("kind", "")
    if not api_version or not kind:
        return ["no apiVersion or kind"]
    if api_version.split("/")[0].endswith("monitoring.coreos.com"):
        schema, path = crd_schema(args.crd_schemas, api_version, kind)
        if schema is None:
            return ["no vendored CRD schema %s" % path]
        validator = jsonschema.Draft7Validator(schema)
        errors = [
            "%s: %s" % (".".join(str(p) for p in e.absolute_path) or "(root)", e.message)
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
        ]
        # The CRD schema says only `metadata: {type: object}`: check it as ObjectMeta.
        meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata")}
        errors += ["metadata: " + e for e in errors_of(meta, args)]
        return errors
    try:
        kubernetes_validate.validate(obj, args.kubernetes_version, strict=True)
        return []
    except kubernetes_validate.ValidationError as e:
        return ["%s: %s" % (".".join(str(p) for p in e.path) or "(root)", e.message)]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes-version", required=True)
    parser.add_argument("--crd-schemas", required=True)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    objects = 0
    failed = 0
    for filename in args.files:
        with open(filename) as f:
            documents = [d for d in yaml.safe_load_all(f) if d]
        for obj in documents:
            objects += 1
            name = "%s/%s" % (obj.get("kind", "?"), (obj.get("metadata") or {}).get("name", "?"))
            errors = errors_of(obj, args)
            if errors:
                failed += 1
                for error in errors:
                    print("ERROR %s %s: %s" % (filename, name, error))
            else:
                print("OK %s %s" % (filename, name))
    if objects == 0:
        print("ERROR no object to validate")
        return 1
    print("%d objects, %d invalid" % (objects, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
