// The AWS SDK for JavaScript v3 (@aws-sdk/client-ec2: its own SigV4 signer, XML parser, retry and
// waiter code, nothing shared with botocore) against softvpc's EC2 API: a VPC life cycle with
// paginators, waiters, DryRun and error paths, the request id on every answer and every error
// ($metadata.requestId, read from the x-amzn-RequestId header), a pending peering connection's
// expiration time, tag filters whose value holds `*`, and managed prefix lists.
//
// Run by tests/api/test_js_sdk.py (node --test), which starts the server and passes
// SOFTVPC_ENDPOINT and AWS_SHARED_CREDENTIALS_FILE.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  EC2Client,
  CreateVpcCommand,
  DescribeVpcsCommand,
  DeleteVpcCommand,
  CreateSubnetCommand,
  DeleteSubnetCommand,
  CreateSecurityGroupCommand,
  AuthorizeSecurityGroupIngressCommand,
  DeleteSecurityGroupCommand,
  CreateVpcPeeringConnectionCommand,
  DeleteVpcPeeringConnectionCommand,
  CreateManagedPrefixListCommand,
  ModifyManagedPrefixListCommand,
  DeleteManagedPrefixListCommand,
  paginateDescribeVpcs,
  paginateGetManagedPrefixListEntries,
  waitUntilVpcAvailable,
  waitUntilSubnetAvailable,
  waitUntilVpcPeeringConnectionExists,
} from "@aws-sdk/client-ec2";

function credentials() {
  const text = readFileSync(process.env.AWS_SHARED_CREDENTIALS_FILE, "utf8");
  const get = (k) => text.match(new RegExp(`^${k}\\s*=\\s*(\\S+)`, "m"))[1];
  return { accessKeyId: get("aws_access_key_id"), secretAccessKey: get("aws_secret_access_key") };
}

const ec2 = new EC2Client({
  endpoint: process.env.SOFTVPC_ENDPOINT,
  region: "us-east-1",
  credentials: credentials(),
  maxAttempts: 1,
});

const REQUEST_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function send(command) {
  const out = await ec2.send(command);
  assert.match(out.$metadata.requestId ?? "", REQUEST_ID, "every answer carries a request id");
  assert.equal(out.$metadata.httpStatusCode, 200);
  return out;
}

// The call fails with AWS error `code` (and HTTP `status`), with a request id and a message.
async function fails(command, code, status = 400) {
  try {
    await ec2.send(command);
  } catch (e) {
    assert.equal(e.name, code, `${code} expected, got ${e.name}: ${e.message}`);
    assert.equal(e.$metadata.httpStatusCode, status);
    assert.match(e.$metadata.requestId ?? "", REQUEST_ID, "every error carries a request id");
    assert.ok(e.message.length > 0);
    return e;
  }
  assert.fail(`${code} expected, the call succeeded`);
}

const tag = (k, v, type = "vpc") => [{ ResourceType: type, Tags: [{ Key: k, Value: v }] }];

test("VPC life cycle: waiters, paginators, DryRun, errors, tag filters with *", async () => {
  const run = `js-${Date.now()}`;
  await fails(new CreateVpcCommand({ CidrBlock: "10.40.0.0/16", DryRun: true }), "DryRunOperation", 412);
  await fails(new CreateVpcCommand({ CidrBlock: "10.40.0.0/33" }), "InvalidParameterValue");

  const vpcs = [];
  for (let i = 0; i < 7; i++) {
    const { Vpc } = await send(new CreateVpcCommand({
      CidrBlock: `10.${40 + i}.0.0/16`,
      TagSpecifications: [{ ResourceType: "vpc", Tags: [
        { Key: "run", Value: run }, { Key: "star", Value: i === 0 ? "x*y?z" : `plain-${i}` }] }],
    }));
    assert.ok(Vpc.VpcId.startsWith("vpc-"));
    vpcs.push(Vpc.VpcId);
  }
  const waited = await waitUntilVpcAvailable({ client: ec2, maxWaitTime: 30 }, { VpcIds: vpcs });
  assert.equal(waited.state, "SUCCESS");

  // The paginator walks every page (MaxResults 5 of 7 VPCs of this run).
  const seen = [];
  let pages = 0;
  for await (const page of paginateDescribeVpcs({ client: ec2, pageSize: 5 },
    { Filters: [{ Name: "tag:run", Values: [run] }] })) {
    pages += 1;
    assert.match(page.$metadata.requestId ?? "", REQUEST_ID);
    seen.push(...page.Vpcs.map((v) => v.VpcId));
  }
  assert.equal(pages, 2);
  assert.deepEqual([...seen].sort(), [...vpcs].sort());

  // `*` in the filter value matches a tag value that itself holds `*` and `?`.
  for (const pattern of ["x*", "x*y?z", "*y?z", "x*z", "*"]) {
    const { Vpcs } = await send(new DescribeVpcsCommand({ Filters: [
      { Name: "tag:run", Values: [run] }, { Name: "tag:star", Values: [pattern] }] }));
    assert.ok(Vpcs.map((v) => v.VpcId).includes(vpcs[0]), `tag:star=${pattern} finds x*y?z`);
  }
  const { Vpcs: none } = await send(new DescribeVpcsCommand({ Filters: [
    { Name: "tag:run", Values: [run] }, { Name: "tag:star", Values: ["y*"] }] }));
  assert.deepEqual(none, []);

  const missing = await fails(new DescribeVpcsCommand({ VpcIds: ["vpc-0123456789abcdef0"] }),
    "InvalidVpcID.NotFound");
  assert.equal(missing.$fault, "client");
  assert.match(missing.message, /vpc-0123456789abcdef0/);

  const { Subnet } = await send(new CreateSubnetCommand({ VpcId: vpcs[0], CidrBlock: "10.40.1.0/24",
    TagSpecifications: tag("Name", "js-subnet", "subnet") }));
  await waitUntilSubnetAvailable({ client: ec2, maxWaitTime: 30 }, { SubnetIds: [Subnet.SubnetId] });
  await fails(new DeleteVpcCommand({ VpcId: vpcs[0] }), "DependencyViolation");

  const { GroupId } = await send(new CreateSecurityGroupCommand({ VpcId: vpcs[0], GroupName: "js-web",
    Description: "js" }));
  await fails(new CreateSecurityGroupCommand({ VpcId: vpcs[0], GroupName: "js-web", Description: "js" }),
    "InvalidGroup.Duplicate");
  await send(new AuthorizeSecurityGroupIngressCommand({ GroupId, IpPermissions: [
    { IpProtocol: "tcp", FromPort: 443, ToPort: 443, IpRanges: [{ CidrIp: "0.0.0.0/0" }] }] }));

  // A pending peering connection: its expiration time is 7 days after the request (as on AWS).
  const { VpcPeeringConnection: pcx } = await send(new CreateVpcPeeringConnectionCommand({
    VpcId: vpcs[0], PeerVpcId: vpcs[1] }));
  assert.equal(pcx.Status.Code, "initiating-request");
  await waitUntilVpcPeeringConnectionExists({ client: ec2, maxWaitTime: 30 },
    { VpcPeeringConnectionIds: [pcx.VpcPeeringConnectionId] });
  assert.ok(pcx.ExpirationTime instanceof Date, "a pending request has an ExpirationTime");
  const week = 7 * 24 * 3600 * 1000;
  assert.ok(Math.abs(pcx.ExpirationTime.getTime() - (Date.now() + week)) < 60_000,
    `ExpirationTime ${pcx.ExpirationTime.toISOString()} is 7 days from now`);
  assert.equal(pcx.RequesterVpcInfo.VpcId, vpcs[0]);
  assert.equal(pcx.AccepterVpcInfo.VpcId, vpcs[1]);
  await send(new DeleteVpcPeeringConnectionCommand({ VpcPeeringConnectionId: pcx.VpcPeeringConnectionId }));

  await send(new DeleteSecurityGroupCommand({ GroupId }));
  await send(new DeleteSubnetCommand({ SubnetId: Subnet.SubnetId }));
  for (const v of vpcs) await send(new DeleteVpcCommand({ VpcId: v }));
  const { Vpcs: left } = await send(new DescribeVpcsCommand({ Filters: [{ Name: "tag:run", Values: [run] }] }));
  assert.deepEqual(left, []);
});

test("managed prefix lists: versions, entries paginator, version mismatch", async () => {
  const { PrefixList: pl } = await send(new CreateManagedPrefixListCommand({
    PrefixListName: `js-${Date.now()}`, MaxEntries: 10, AddressFamily: "IPv4",
    Entries: [0, 1, 2, 3, 4, 5, 6].map((i) => ({ Cidr: `10.${i}.0.0/16`, Description: `e${i}` })) }));
  assert.equal(pl.Version, 1);
  assert.equal(pl.State, "create-complete");
  const cidrs = [];
  for await (const page of paginateGetManagedPrefixListEntries({ client: ec2, pageSize: 3 },
    { PrefixListId: pl.PrefixListId })) {
    cidrs.push(...page.Entries.map((e) => e.Cidr));
  }
  assert.equal(cidrs.length, 7);
  await fails(new ModifyManagedPrefixListCommand({ PrefixListId: pl.PrefixListId, CurrentVersion: 9,
    AddEntries: [{ Cidr: "10.99.0.0/16" }] }), "PrefixListVersionMismatch");
  const { PrefixList: m } = await send(new ModifyManagedPrefixListCommand({
    PrefixListId: pl.PrefixListId, CurrentVersion: 1, AddEntries: [{ Cidr: "10.99.0.0/16" }] }));
  assert.equal(m.Version, 2);
  await send(new DeleteManagedPrefixListCommand({ PrefixListId: pl.PrefixListId }));
  await fails(new DeleteManagedPrefixListCommand({ PrefixListId: pl.PrefixListId }),
    "InvalidPrefixListID.NotFound");
});
