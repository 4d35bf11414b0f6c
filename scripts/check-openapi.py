#!/usr/bin/env python3
"""Checks modeld's OpenAPI document and live responses against it.

Input (a JSON file given as the only argument):
  {"document": <the OpenAPI document>,
   "samples": [{"path": "/api/v1/models", "method": "get", "status": "200",
                "content_type": "application/json", "body": <the response body>}, ...]}
Prints one line per problem and exits 1 when there is any.
"""
import json
import sys

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

data = json.load(open(sys.argv[1]))
document = data["document"]
problems = []
try:
    validate(document)
except Exception as error:  # the validator raises its own exception types
    problems.append(f"document: {error}".splitlines()[0])

for sample in data["samples"]:
    where = f'{sample["method"].upper()} {sample["path"]} {sample["status"]}'
    try:
        response = document["paths"][sample["path"]][sample["method"]]["responses"][sample["status"]]
        schema = dict(response["content"][sample["content_type"]]["schema"])
    except KeyError as missing:
        problems.append(f"{where}: not documented ({missing})")
        continue
    schema["components"] = document["components"]
    for error in Draft202012Validator(schema).iter_errors(sample["body"]):
        path = "/".join(str(part) for part in error.absolute_path)
        problems.append(f"{where}: at /{path}: {error.message}")

for problem in problems:
    print(problem)
print(f'{len(data["samples"])} samples checked, {len(problems)} problems')
sys.exit(1 if problems else 0)
