#!/usr/bin/env python3
"""Checks that botocore's own EC2 response parser reads our XML back as the tree we encoded.

Input: a JSON file [{"operation", "status", "xml", "expected", "requestId"}]. For status 200,
`expected` is the output tree (member names, timestamps as ISO 8601 with milliseconds); for an
error, {"Code", "Message"}. Prints each mismatch; exits 1 if any, 0 otherwise.

    python3 parse_responses.py CASES.json
"""

import datetime
import json
import sys

import botocore.session
from botocore.parsers import create_parser


def normalize(v):
    if isinstance(v, datetime.datetime):
        v = v.astimezone(datetime.timezone.utc)
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    if isinstance(v, list):
        return [normalize(x) for x in v]
    return v


def main(path):
    with open(path, encoding="utf-8") as f:
        cases = json.load(f)
    service = botocore.session.get_session().get_service_model("ec2")
    parser = create_parser("ec2")
    bad = 0
    for i, case in enumerate(cases):
        op = service.operation_model(case["operation"])
        response = {"body": case["xml"].encode("utf-8"), "headers": {},
                    "status_code": case["status"]}
        try:
            parsed = parser.parse(response, op.output_shape)
        except Exception as e:  # a crash in botocore's parser is a failure of ours
            print(f"#{i} {case['operation']}: botocore could not parse: {e}\n{case['xml']}")
            bad += 1
            continue
        meta = parsed.pop("ResponseMetadata", {})
        got = normalize(parsed)
        if case["status"] != 200:
            got = got.get("Error")
        if meta.get("RequestId") != case["requestId"]:
            print(f"#{i} {case['operation']}: request id {meta.get('RequestId')!r}")
            bad += 1
        elif got != case["expected"]:
            print(f"#{i} {case['operation']}:\n  parsed   {json.dumps(got, ensure_ascii=False)}"
                  f"\n  expected {json.dumps(case['expected'], ensure_ascii=False)}"
                  f"\n  xml {case['xml']}")
            bad += 1
    print(f"botocore parsed {len(cases)} responses: {len(cases) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
