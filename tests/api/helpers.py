"""Small helpers shared by the API tests."""

import botocore.exceptions
import pytest


def expect_error(code, status, fn, *args, **kwargs):
    """Calls fn and asserts it fails with the AWS error `code` and HTTP `status`."""
    with pytest.raises(botocore.exceptions.ClientError) as info:
        fn(*args, **kwargs)
    err = info.value.response
    assert err["Error"]["Code"] == code, err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status, err
    assert err["Error"]["Message"], err
    return err


def tags(resource):
    # Most shapes call the list Tags; NetworkInterface calls it TagSet (as AWS does).
    return {t["Key"]: t["Value"] for t in resource.get("Tags", resource.get("TagSet", []))}


def instances(reservations_response):
    return [i for r in reservations_response["Reservations"] for i in r["Instances"]]
