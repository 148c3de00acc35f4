"""Flow logs through boto3 and the AWS CLI: CreateFlowLogs for VPCs, subnets and ENIs to each
destination type (a local directory under the server's flow-log directory, made on creation),
per-resource `Unsuccessful` items, whole-request refusals with AWS's code and HTTP status,
DryRun, ClientToken retries, DescribeFlowLogs filters and paginator, tags, DeleteFlowLogs,
flow logs deleted with their resource, a destination that cannot be made (DeliverLogsStatus
FAILED), and persistence across a restart with `--flow-log-dir`."""

from pathlib import Path

from conftest import Server
from helpers import expect_error, tags

ROLE = "arn:aws:iam::123456789012:role/flow-logs"
DEFAULT_FORMAT = ("${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} "
                  "${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}")
MISSING_VPC = "vpc-0123456789abcdef0"
MISSING_FL = "fl-0123456789abcdef0"


def flow_dir(server):
    return Path(server.data_dir) / "flow-logs"


def cwl(ec2, resource_ids, group, resource_type="VPC", **extra):
    args = dict(ResourceType=resource_type, ResourceIds=resource_ids, TrafficType="ALL",
                LogGroupName=group, DeliverLogsPermissionArn=ROLE)
    args.update(extra)
    return ec2.create_flow_logs(**args)


def describe(ec2, fid):
    got = ec2.describe_flow_logs(FlowLogIds=[fid])["FlowLogs"]
    assert len(got) == 1, got
    return got[0]


def test_flow_logs_lifecycle(ec2, server, vpc, subnet):
    vid, sid = vpc["VpcId"], subnet["SubnetId"]
    expect_error("DryRunOperation", 412, cwl, ec2, [vid], "lifecycle/vpc", DryRun=True)
    assert ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vid]}])["FlowLogs"] == []
    assert not (flow_dir(server) / "lifecycle").exists()

    # CloudWatch Logs (the default destination type) on the VPC, tagged at creation.
    r = cwl(ec2, [vid], "lifecycle/vpc",
            TagSpecifications=[{"ResourceType": "vpc-flow-log", "Tags": [{"Key": "Name", "Value": "vpc-all"}]}])
    assert r["Unsuccessful"] == [] and len(r["FlowLogIds"]) == 1
    fid = r["FlowLogIds"][0]
    assert fid.startswith("fl-") and len(fid) == 20
    f = describe(ec2, fid)
    assert f["ResourceId"] == vid and f["TrafficType"] == "ALL"
    assert f["LogDestinationType"] == "cloud-watch-logs" and f["LogGroupName"] == "lifecycle/vpc"
    assert f["LogDestination"] == "arn:aws:logs:us-east-1:123456789012:log-group:lifecycle/vpc"
    assert f["DeliverLogsPermissionArn"] == ROLE
    assert (f["DeliverLogsStatus"], f["FlowLogStatus"]) == ("SUCCESS", "ACTIVE")
    assert f["LogFormat"] == DEFAULT_FORMAT and f["MaxAggregationInterval"] == 600
    assert tags(f) == {"Name": "vpc-all"} and "CreationTime" in f
    assert "DeliverLogsErrorMessage" not in f and "DestinationOptions" not in f
    assert (flow_dir(server) / "lifecycle" / "vpc").is_dir()

    # S3 (bucket + prefix) on the subnet, custom format and 60 s aggregation.
    fmt = "${version} ${vpc-id} ${subnet-id} ${srcaddr} ${dstaddr} ${action} ${reject-reason}"
    r = ec2.create_flow_logs(ResourceType="Subnet", ResourceIds=[sid], TrafficType="REJECT",
                             LogDestinationType="s3", LogDestination="arn:aws:s3:::lifecycle-bucket/sub/rejects/",
                             LogFormat=fmt, MaxAggregationInterval=60,
                             DestinationOptions={"FileFormat": "plain-text", "PerHourPartition": False})
    assert r["Unsuccessful"] == []
    f = describe(ec2, r["FlowLogIds"][0])
    assert (f["ResourceId"], f["TrafficType"], f["LogDestinationType"]) == (sid, "REJECT", "s3")
    assert f["LogDestination"] == "arn:aws:s3:::lifecycle-bucket/sub/rejects/" and "LogGroupName" not in f
    assert f["LogFormat"] == fmt and f["MaxAggregationInterval"] == 60
    assert f["DestinationOptions"] == {"FileFormat": "plain-text", "HiveCompatiblePartitions": False,
                                       "PerHourPartition": False}
    assert (flow_dir(server) / "lifecycle-bucket" / "sub" / "rejects").is_dir()

    # Kinesis Data Firehose on an ENI.
    eni = ec2.create_network_interface(SubnetId=sid)["NetworkInterface"]["NetworkInterfaceId"]
    stream = "arn:aws:firehose:us-east-1:123456789012:deliverystream/lifecycle-stream"
    r = ec2.create_flow_logs(ResourceType="NetworkInterface", ResourceIds=[eni], TrafficType="ACCEPT",
                             LogDestinationType="kinesis-data-firehose", LogDestination=stream)
    assert r["Unsuccessful"] == []
    f = describe(ec2, r["FlowLogIds"][0])
    assert (f["ResourceId"], f["LogDestinationType"], f["LogDestination"]) == (eni, "kinesis-data-firehose", stream)
    assert (flow_dir(server) / "lifecycle-stream").is_dir()

    # Per-resource outcomes: a missing VPC and a duplicate are Unsuccessful, the rest is made.
    r = cwl(ec2, [vid, MISSING_VPC], "lifecycle/vpc")
    assert r["FlowLogIds"] == []
    assert [(u["ResourceId"], u["Error"]["Code"]) for u in r["Unsuccessful"]] == [
        (vid, "FlowLogAlreadyExists"), (MISSING_VPC, "InvalidVpcID.NotFound")]
    assert all(u["Error"]["Message"] for u in r["Unsuccessful"])
    r = cwl(ec2, [vid, MISSING_VPC], "lifecycle/vpc", TrafficType="ACCEPT")
    assert len(r["FlowLogIds"]) == 1 and [u["ResourceId"] for u in r["Unsuccessful"]] == [MISSING_VPC]
    accept_id = r["FlowLogIds"][0]
    # The id must name a resource of the given type.
    r = cwl(ec2, [vid], "lifecycle/vpc", resource_type="Subnet")
    assert [u["Error"]["Code"] for u in r["Unsuccessful"]] == ["InvalidSubnetID.NotFound"]
    r = cwl(ec2, [vid], "lifecycle/vpc", resource_type="NetworkInterface")
    assert [u["Error"]["Code"] for u in r["Unsuccessful"]] == ["InvalidNetworkInterfaceID.NotFound"]

    # DescribeFlowLogs: unknown ids are simply absent.
    assert ec2.describe_flow_logs(FlowLogIds=[MISSING_FL])["FlowLogs"] == []
    got = ec2.describe_flow_logs(FlowLogIds=[fid, MISSING_FL, accept_id])["FlowLogs"]
    assert sorted(x["FlowLogId"] for x in got) == sorted([fid, accept_id])

    # Tags through CreateTags/DeleteTags/DescribeTags.
    ec2.create_tags(Resources=[fid], Tags=[{"Key": "env", "Value": "dev"}])
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [fid]}])["Tags"]
    assert {(t["ResourceType"], t["Key"], t["Value"]) for t in rows} == {
        ("vpc-flow-log", "Name", "vpc-all"), ("vpc-flow-log", "env", "dev")}
    rows = ec2.describe_tags(Filters=[{"Name": "resource-type", "Values": ["vpc-flow-log"]},
                                      {"Name": "key", "Values": ["env"]}])["Tags"]
    assert fid in {t["ResourceId"] for t in rows}
    ec2.delete_tags(Resources=[fid], Tags=[{"Key": "Name"}])
    assert tags(describe(ec2, fid)) == {"env": "dev"}
    expect_error("InvalidFlowLogId.NotFound", 400, ec2.create_tags, Resources=[MISSING_FL],
                 Tags=[{"Key": "a", "Value": "b"}])

    # DeleteFlowLogs: DryRun changes nothing; unknown ids are Unsuccessful, the rest deleted.
    expect_error("DryRunOperation", 412, ec2.delete_flow_logs, FlowLogIds=[fid], DryRun=True)
    describe(ec2, fid)
    r = ec2.delete_flow_logs(FlowLogIds=[fid, MISSING_FL])
    assert [(u["ResourceId"], u["Error"]["Code"]) for u in r["Unsuccessful"]] == [(MISSING_FL, "InvalidFlowLogId.NotFound")]
    assert ec2.describe_flow_logs(FlowLogIds=[fid])["FlowLogs"] == []
    r = ec2.delete_flow_logs(FlowLogIds=[fid])
    assert [u["Error"]["Code"] for u in r["Unsuccessful"]] == ["InvalidFlowLogId.NotFound"]
    # The destination directory (and whatever it holds) stays, as a log group or bucket does.
    assert (flow_dir(server) / "lifecycle" / "vpc").is_dir()
    expect_error("InvalidFlowLogId.NotFound", 400, ec2.create_tags, Resources=[fid],
                 Tags=[{"Key": "a", "Value": "b"}])


def test_flow_log_refusals(ec2, server, vpc):
    vid = vpc["VpcId"]
    base = dict(ResourceType="VPC", ResourceIds=[vid], TrafficType="ALL")
    cases = [
        # (code, parameters)
        ("MissingParameter", dict(ResourceType="VPC", ResourceIds=[vid], LogGroupName="g", DeliverLogsPermissionArn=ROLE)),
        ("InvalidParameterValue", dict(base, ResourceType="TransitGateway", LogGroupName="g", DeliverLogsPermissionArn=ROLE)),
        ("InvalidParameterValue", dict(base, TrafficType="SOME", LogGroupName="g", DeliverLogsPermissionArn=ROLE)),
        ("InvalidParameter", dict(base, LogGroupName="g")),
        ("InvalidParameter", dict(base, DeliverLogsPermissionArn=ROLE)),
        ("InvalidParameter", dict(base, LogGroupName="g", DeliverLogsPermissionArn=ROLE,
                                  LogDestination="arn:aws:logs:us-east-1:123456789012:log-group:g")),
        ("InvalidParameter", dict(base, LogDestinationType="s3")),
        ("InvalidParameter", dict(base, LogDestinationType="s3", LogGroupName="g")),
        ("InvalidParameter", dict(base, LogDestinationType="s3", LogDestination="arn:aws:s3:::Not_A_Bucket")),
        ("InvalidParameter", dict(base, LogDestinationType="s3", LogDestination="arn:aws:s3:::bucket/AWSLogs/x")),
        ("InvalidParameter", dict(base, LogDestinationType="kinesis-data-firehose", LogDestination="arn:aws:s3:::bucket")),
        ("InvalidParameter", dict(base, LogGroupName="g", DeliverLogsPermissionArn=ROLE, MaxAggregationInterval=300)),
        ("InvalidParameter", dict(base, LogGroupName="g", DeliverLogsPermissionArn=ROLE,
                                  DestinationOptions={"FileFormat": "parquet"})),
        # S3 options asking for what softvpc does not write (Parquet files, partitioned keys):
        # refused, never accepted and then written as plain text in one file.
        ("InvalidParameterValue", dict(base, LogDestinationType="s3", LogDestination="arn:aws:s3:::bucket",
                                       DestinationOptions={"FileFormat": "parquet"})),
        ("InvalidParameterValue", dict(base, LogDestinationType="s3", LogDestination="arn:aws:s3:::bucket",
                                       DestinationOptions={"HiveCompatiblePartitions": True})),
        ("InvalidParameterValue", dict(base, LogDestinationType="s3", LogDestination="arn:aws:s3:::bucket",
                                       DestinationOptions={"FileFormat": "plain-text", "PerHourPartition": True})),
        ("InvalidParameterValue", dict(base, LogGroupName="g", DeliverLogsPermissionArn=ROLE, LogFormat="${version} ${bogus}")),
        ("InvalidParameterValue", dict(base, LogGroupName="g", DeliverLogsPermissionArn=ROLE, LogFormat="${version} ")),
        ("InvalidParameterValue", dict(base, LogGroupName="g", DeliverLogsPermissionArn=ROLE, LogFormat="version")),
        # Names that would leave the flow-log directory, or are not log group names at all.
        ("InvalidParameterValue", dict(base, LogGroupName="../escape", DeliverLogsPermissionArn=ROLE)),
        ("InvalidParameterValue", dict(base, LogGroupName="a/../../b", DeliverLogsPermissionArn=ROLE)),
        ("InvalidParameterValue", dict(base, LogGroupName="..", DeliverLogsPermissionArn=ROLE)),
        ("InvalidParameterValue", dict(base, LogGroupName="has space", DeliverLogsPermissionArn=ROLE)),
        ("InvalidParameterValue", dict(base, LogDestinationType="s3", LogDestination="arn:aws:s3:::bucket/../../etc")),
        ("InvalidParameterValue", dict(base, LogDestinationType="kinesis-data-firehose",
                                       LogDestination="arn:aws:firehose:us-east-1:123456789012:deliverystream/..")),
        ("InvalidParameterValue", dict(base, ResourceIds=[vid] * 1001, LogGroupName="g", DeliverLogsPermissionArn=ROLE)),
    ]
    for code, params in cases:
        expect_error(code, 400, ec2.create_flow_logs, **params)
    assert ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vid]}])["FlowLogs"] == []
    assert not (flow_dir(server).parent / "escape").exists()
    expect_error("InvalidParameterValue", 400, cwl, ec2, [vid], "g",
                 TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "a", "Value": "b"}]}])
    expect_error("MissingParameter", 400, ec2.delete_flow_logs, FlowLogIds=[])
    expect_error("InvalidParameterValue", 400, ec2.describe_flow_logs, Filters=[{"Name": "bogus", "Values": ["x"]}])
    expect_error("DryRunOperation", 412, ec2.describe_flow_logs, DryRun=True)
    expect_error("InvalidParameterValue", 400, ec2.describe_flow_logs, FlowLogIds=[MISSING_FL] * 1001)


def test_flow_log_client_token(ec2, vpc):
    vid = vpc["VpcId"]
    first = cwl(ec2, [vid, MISSING_VPC], "token-group", ClientToken="fl-token-1")
    assert first["ClientToken"] == "fl-token-1" and len(first["FlowLogIds"]) == 1
    again = cwl(ec2, [vid, MISSING_VPC], "token-group", ClientToken="fl-token-1")
    assert again["FlowLogIds"] == first["FlowLogIds"]
    assert [u["Error"]["Code"] for u in again["Unsuccessful"]] == ["InvalidVpcID.NotFound"]
    mine = ec2.describe_flow_logs(Filters=[{"Name": "resource-id", "Values": [vid]}])["FlowLogs"]
    assert [f["FlowLogId"] for f in mine] == first["FlowLogIds"]
    expect_error("IdempotentParameterMismatch", 400, cwl, ec2, [vid], "token-group", TrafficType="REJECT",
                 ClientToken="fl-token-1")
    # Without the token the same request is a duplicate.
    r = cwl(ec2, [vid], "token-group")
    assert [u["Error"]["Code"] for u in r["Unsuccessful"]] == ["FlowLogAlreadyExists"]


def test_flow_log_filters_and_paginator(ec2, vpc):
    vid = vpc["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vid, CidrBlock=f"10.0.{i}.0/24")["Subnet"]["SubnetId"] for i in range(7)]
    mark = [{"ResourceType": "vpc-flow-log", "Tags": [{"Key": "flpage", "Value": "yes"}]}]
    made = cwl(ec2, subnets, "filters/subnets", resource_type="Subnet", TagSpecifications=mark)["FlowLogIds"]
    assert len(made) == 7
    s3 = ec2.create_flow_logs(ResourceType="VPC", ResourceIds=[vid], TrafficType="REJECT", LogDestinationType="s3",
                              LogDestination="arn:aws:s3:::filters-bucket", TagSpecifications=mark)["FlowLogIds"][0]
    mine = [{"Name": "tag:flpage", "Values": ["yes"]}]
    pages = list(ec2.get_paginator("describe_flow_logs").paginate(Filter=mine, PaginationConfig={"PageSize": 3}))
    assert [len(p["FlowLogs"]) for p in pages] == [3, 3, 2]
    assert sorted(f["FlowLogId"] for p in pages for f in p["FlowLogs"]) == sorted(made + [s3])

    def ids(*filters):
        return sorted(f["FlowLogId"] for f in ec2.describe_flow_logs(Filter=mine + list(filters))["FlowLogs"])

    assert ids({"Name": "log-destination-type", "Values": ["s3"]}) == [s3]
    assert ids({"Name": "log-destination-type", "Values": ["cloud-watch-logs"]}) == sorted(made)
    assert ids({"Name": "traffic-type", "Values": ["REJECT", "ACCEPT"]}) == [s3]
    assert ids({"Name": "log-group-name", "Values": ["filters/*"]}) == sorted(made)
    assert ids({"Name": "resource-id", "Values": [subnets[0], vid]}) == sorted([made[0], s3])
    assert ids({"Name": "flow-log-id", "Values": [made[3]]}) == [made[3]]
    assert ids({"Name": "deliver-log-status", "Values": ["SUCCESS"]}) == sorted(made + [s3])
    assert ids({"Name": "deliver-log-status", "Values": ["FAILED"]}) == []
    assert ids({"Name": "tag-key", "Values": ["flpage"]}, {"Name": "tag-value", "Values": ["ye?"]}) == sorted(made + [s3])
    assert ids({"Name": "traffic-type", "Values": ["ALL"]}, {"Name": "log-destination-type", "Values": ["s3"]}) == []
    got = ec2.describe_flow_logs(FlowLogIds=made[:2], MaxResults=1)
    assert len(got["FlowLogs"]) == 1 and got["NextToken"]
    rest = ec2.describe_flow_logs(FlowLogIds=made[:2], MaxResults=1, NextToken=got["NextToken"])
    assert {got["FlowLogs"][0]["FlowLogId"], rest["FlowLogs"][0]["FlowLogId"]} == set(made[:2])
    assert "NextToken" not in rest
    expect_error("InvalidNextToken", 400, ec2.describe_flow_logs, NextToken="not-a-token")
    ec2.delete_flow_logs(FlowLogIds=made + [s3])


def test_flow_logs_are_deleted_with_their_resource(ec2, vpc, subnet):
    vid, sid = vpc["VpcId"], subnet["SubnetId"]
    eni = ec2.create_network_interface(SubnetId=sid)["NetworkInterface"]["NetworkInterfaceId"]
    on_eni = cwl(ec2, [eni], "cascade", resource_type="NetworkInterface")["FlowLogIds"][0]
    on_subnet = cwl(ec2, [sid], "cascade", resource_type="Subnet")["FlowLogIds"][0]
    on_vpc = cwl(ec2, [vid], "cascade")["FlowLogIds"][0]

    def alive():
        got = ec2.describe_flow_logs(FlowLogIds=[on_eni, on_subnet, on_vpc])["FlowLogs"]
        return {f["FlowLogId"] for f in got}

    assert alive() == {on_eni, on_subnet, on_vpc}
    ec2.delete_network_interface(NetworkInterfaceId=eni)
    assert alive() == {on_subnet, on_vpc}
    # A refused deletion takes nothing with it.
    expect_error("DependencyViolation", 400, ec2.delete_vpc, VpcId=vid)
    assert alive() == {on_subnet, on_vpc}
    ec2.delete_subnet(SubnetId=sid)
    assert alive() == {on_vpc}
    ec2.delete_vpc(VpcId=vid)
    assert alive() == set()
    rows = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [on_vpc]}])["Tags"]
    assert rows == []


def test_destination_that_cannot_be_made_is_reported(ec2, server, vpc):
    vid = vpc["VpcId"]
    flow_dir(server).mkdir(parents=True, exist_ok=True)
    blocker = flow_dir(server) / "blocked-by-a-file"
    blocker.write_text("not a directory\n")
    r = cwl(ec2, [vid], "blocked-by-a-file/inner")
    assert r["Unsuccessful"] == [] and len(r["FlowLogIds"]) == 1
    f = describe(ec2, r["FlowLogIds"][0])
    assert f["DeliverLogsStatus"] == "FAILED"
    assert "blocked-by-a-file" in f["DeliverLogsErrorMessage"]
    got = ec2.describe_flow_logs(Filter=[{"Name": "deliver-log-status", "Values": ["FAILED"]},
                                         {"Name": "resource-id", "Values": [vid]}])["FlowLogs"]
    assert [x["FlowLogId"] for x in got] == r["FlowLogIds"]
    ec2.delete_flow_logs(FlowLogIds=r["FlowLogIds"])


def test_cli_create_flow_logs(aws, server):
    rc, out, err = aws("create-vpc", "--cidr-block", "10.60.0.0/16")
    assert rc == 0, err
    vid = out["Vpc"]["VpcId"]
    rc, out, err = aws("create-flow-logs", "--resource-type", "VPC", "--resource-ids", vid,
                       "--traffic-type", "ALL", "--log-group-name", "cli/flows",
                       "--deliver-logs-permission-arn", ROLE,
                       "--tag-specifications", "ResourceType=vpc-flow-log,Tags=[{Key=Name,Value=cli}]")
    assert rc == 0, err
    assert out["Unsuccessful"] == [] and len(out["FlowLogIds"]) == 1
    fid = out["FlowLogIds"][0]
    assert (flow_dir(server) / "cli" / "flows").is_dir()
    rc, out, err = aws("describe-flow-logs", "--filter", f"Name=resource-id,Values={vid}")
    assert rc == 0, err
    assert [(f["FlowLogId"], f["LogGroupName"], f["DeliverLogsStatus"]) for f in out["FlowLogs"]] == [
        (fid, "cli/flows", "SUCCESS")]
    rc, out, err = aws("create-flow-logs", "--resource-type", "VPC", "--resource-ids", vid,
                       "--traffic-type", "ALL", "--log-group-name", "cli/flows")
    assert rc != 0 and "InvalidParameter" in err
    rc, out, err = aws("delete-flow-logs", "--flow-log-ids", fid, MISSING_FL)
    assert rc == 0, err
    assert [u["ResourceId"] for u in out["Unsuccessful"]] == [MISSING_FL]
    rc, out, err = aws("delete-vpc", "--vpc-id", vid)
    assert rc == 0, err


def test_flow_logs_survive_restart(workdir):
    logs = workdir / "flowlog-restart-destinations"
    srv = Server(workdir / "flowlog-restart", extra_args=["--flow-log-dir", str(logs)]).start()
    try:
        ec2 = srv.client()
        vid = ec2.create_vpc(CidrBlock="10.70.0.0/16")["Vpc"]["VpcId"]
        fid = cwl(ec2, [vid], "/restart/group",
                  TagSpecifications=[{"ResourceType": "vpc-flow-log", "Tags": [{"Key": "k", "Value": "v"}]}])["FlowLogIds"][0]
        assert (logs / "restart" / "group").is_dir()
        assert not (Path(srv.data_dir) / "flow-logs").exists()
        before = ec2.describe_flow_logs(FlowLogIds=[fid])["FlowLogs"]
        srv.stop()
        # A destination removed while the server was down is made again at startup.
        (logs / "restart" / "group").rmdir()
        srv.start()
        ec2 = srv.client()
        assert ec2.describe_flow_logs(FlowLogIds=[fid])["FlowLogs"] == before
        assert (logs / "restart" / "group").is_dir()
        r = cwl(ec2, [vid], "/restart/group")
        assert [u["Error"]["Code"] for u in r["Unsuccessful"]] == ["FlowLogAlreadyExists"]
        ec2.delete_vpc(VpcId=vid)
        srv.stop()
        srv.start()
        assert srv.client().describe_flow_logs(FlowLogIds=[fid])["FlowLogs"] == []
    finally:
        srv.stop()
