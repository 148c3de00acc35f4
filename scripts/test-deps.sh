#!/usr/bin/env bash
# The test suite's dependency step: installs what the tests need on a fresh machine (Rust and
# Python present, nothing else), saying what it installs. scripts/test.sh runs it first; run it
# alone to prepare a machine. Debian packages need root (apt-get); Python packages go to the
# interpreter named by $PYTHON (default python3), so a virtualenv works too.
#
# Exit status: 0 when everything the tests need is present afterwards; 1 otherwise, after naming
# each missing piece, what needs it and why it could not be installed.
set -uo pipefail

PYTHON="${PYTHON:-python3}"

# command -> Debian package, and what needs it.
apt_needs=(
  "ip:iproute2:the lab and the end-to-end tests (namespaces, links)"
  "ping:iputils-ping:end-to-end tests (reachability through the virtual router)"
  "arping:iputils-arping:end-to-end tests (ARP answered by the virtual router)"
  "tcpdump:tcpdump:end-to-end tests (what instances and the underlay see)"
  "iperf3:iperf3:end-to-end and benchmark tests (throughput)"
  "curl:curl:API and end-to-end tests (raw HTTP requests)"
  "socat:socat:end-to-end tests (UDP to the lab's internet, malformed DHCP)"
  "udhcpc:udhcpc:end-to-end tests (a real DHCP client in an instance)"
  "dig:dnsutils:end-to-end tests (DNS queries to the VPC resolver)"
  "tracepath:iputils-tracepath:end-to-end tests (path MTU inside a VPC)"
  "nc:netcat-openbsd:end-to-end tests (softvpc trace against real TCP connections)"
  "tracepath:iputils-tracepath:end-to-end tests (path MTU through internet and NAT gateways)"
  "ssh-keygen:openssh-client:API tests (key pair fingerprints and key material checked)"
  "openssl:openssl:API tests (key pair fingerprints checked from the key material)"
  "unshare:util-linux:the fresh-machine test (hides tools in a private mount namespace)"
  "node:nodejs:API tests (the AWS SDK for JavaScript v3 as a second client, tests/js)"
  "npm:npm:the dependency step (installs the JavaScript SDK into tests/js)"
  "etcd:etcd-server:the etcd store tests (SOFTVPC_TEST_STORE=etcd, test_etcd_replicas.py)"
  "etcdctl:etcd-client:the etcd store tests (inspecting the cluster)"
)
# Python module -> pip package, and what needs it.
py_needs=(
  "pytest:pytest:every Python test (tests/api, tests/e2e)"
  "boto3:boto3:API and end-to-end tests (the AWS SDK as a client)"
  "awscli:awscli:API tests (the AWS CLI as a client)"
  "ansible_collections.amazon.aws:ansible:API tests (Ansible's amazon.aws collection as a client, tests/api/test_ansible.py)"
)

missing_apt=()
for entry in "${apt_needs[@]}"; do
  IFS=: read -r cmd pkg _ <<<"$entry"
  command -v "$cmd" >/dev/null 2>&1 || missing_apt+=("$pkg")
done
missing_py=()
for entry in "${py_needs[@]}"; do
  IFS=: read -r mod pkg _ <<<"$entry"
  "$PYTHON" -c "import $mod" >/dev/null 2>&1 || missing_py+=("$pkg")
done

if [ ${#missing_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing Debian packages the tests need: ${missing_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_apt[@]}" >/dev/null \
      || echo "!! apt-get install ${missing_apt[*]} failed"
  fi
fi
if [ ${#missing_py[@]} -gt 0 ]; then
  echo "==> installing Python packages the tests need into $("$PYTHON" -c 'import sys; print(sys.prefix)'): ${missing_py[*]}"
  "$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore "${missing_py[@]}" \
    || echo "!! pip install ${missing_py[*]} failed"
fi

# The AWS SDK for JavaScript v3 (tests/js, pinned by its package-lock.json), from npm.
js_dir="$(dirname "$0")/../tests/js"
# npm ci again when the lock file is newer than what it installed (node_modules/.package-lock.json).
if command -v npm >/dev/null 2>&1 && { [ ! -d "$js_dir/node_modules/@aws-sdk/client-ec2" ] \
    || [ "$js_dir/package-lock.json" -nt "$js_dir/node_modules/.package-lock.json" ]; }; then
  echo "==> installing the AWS SDK for JavaScript v3 into tests/js (npm ci)"
  (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || echo "!! npm ci in tests/js failed"
fi

# What is still missing, with what needs it and why.
status=0
for entry in "${apt_needs[@]}"; do
  IFS=: read -r cmd pkg why <<<"$entry"
  if ! command -v "$cmd" >/dev/null 2>&1; then
    status=1
    if [ "$(id -u)" -ne 0 ]; then
      echo "!! missing \`$cmd\` (Debian package $pkg), needed by $why: not root, so apt-get cannot install it; run as root or: sudo apt-get install $pkg"
    else
      echo "!! missing \`$cmd\` (Debian package $pkg), needed by $why: apt-get install $pkg did not provide it"
    fi
  fi
done
for entry in "${py_needs[@]}"; do
  IFS=: read -r mod pkg why <<<"$entry"
  if ! "$PYTHON" -c "import $mod" >/dev/null 2>&1; then
    status=1
    echo "!! missing Python module $mod (pip package $pkg), needed by $why: $PYTHON -m pip install $pkg failed"
  fi
done
if [ ! -d "$js_dir/node_modules/@aws-sdk/client-ec2" ]; then
  echo "!! missing the npm package @aws-sdk/client-ec2 in tests/js, needed by the API tests (tests/api/test_js_sdk.py): npm ci in tests/js failed or npm is missing"
  status=1
fi
# The AWS CLI's entry point must run, not only import.
if "$PYTHON" -c "import awscli" >/dev/null 2>&1 && ! command -v aws >/dev/null 2>&1; then
  echo "!! the awscli package is installed but no \`aws\` command is on PATH ($PATH)"
  status=1
fi
[ $status -eq 0 ] && echo "==> test dependencies present"
exit $status
