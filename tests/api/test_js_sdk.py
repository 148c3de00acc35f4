"""The AWS SDK for JavaScript v3 as a second client (its own signer and XML parser, not
botocore's): tests/js/lifecycle.test.mjs run by Node's test runner against this module's own
server. scripts/test-deps.sh installs the SDK (npm ci in tests/js); without Node or the SDK this
test fails, saying what is missing (it never skips)."""

import os
import shutil
import subprocess

from conftest import ROOT, Server, HOSTS

JS = ROOT / "tests" / "js"


def test_js_sdk_v3_lifecycle(workdir):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/test-deps.sh installs nodejs)"
    assert (JS / "node_modules" / "@aws-sdk" / "client-ec2").is_dir(), (
        "@aws-sdk/client-ec2 is not installed: run scripts/test-deps.sh (npm ci in tests/js)")
    srv = Server(workdir / "js-sdk", hosts=HOSTS).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(SOFTVPC_ENDPOINT=srv.endpoint,
                   AWS_SHARED_CREDENTIALS_FILE=str(srv.credentials_file))
        p = subprocess.run([node, "--test", "--test-reporter=spec", "lifecycle.test.mjs"],
                           cwd=JS, env=env, capture_output=True, text=True, timeout=180)
        print(p.stdout)
        print(p.stderr)
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
        assert "pass 2" in p.stdout and "fail 0" in p.stdout, p.stdout[-2000:]
    finally:
        srv.stop()
