#!/usr/bin/env python3
"""Writes crates/softvpc-ec2-protocol/model/ec2-vpc.json: the part of botocore's EC2 service model
(data/ec2/2016-11-15/service-2.json[.gz]) that a VPC implementation serves.

Keeps the operations listed in OPERATIONS and every shape they reach, with for each shape its type,
`required` members, min/max, enum values, and for each member its name, target shape,
`locationName` and `queryName` (`locationName` folded in from the target shape when the member
reference has none, as botocore's shape resolver does), and the list member's `locationName`.
Documentation is dropped. Members are written as ordered lists so the model's member order (the
order AWS writes response elements in) survives JSON maps without order. Output is deterministic
(sorted shape and operation names, fixed indentation). Run it again after upgrading botocore:

    python3 scripts/gen-ec2-model.py [--out PATH]
"""

import argparse
import gzip
import json
import os
import sys

import botocore

# The EC2 actions of issue 3 (VPC resources) plus the account/region/host discovery calls.
OPERATIONS = [
    # VPCs
    "CreateVpc", "DeleteVpc", "DescribeVpcs", "DescribeVpcAttribute", "ModifyVpcAttribute",
    "AssociateVpcCidrBlock", "DisassociateVpcCidrBlock",
    # Subnets
    "CreateSubnet", "DeleteSubnet", "DescribeSubnets", "ModifySubnetAttribute",
    # Instances
    "RunInstances", "TerminateInstances", "DescribeInstances", "StartInstances",
    "StopInstances", "DescribeInstanceStatus", "ModifyInstanceAttribute",
    "DescribeInstanceAttribute", "ModifyInstanceMetadataOptions",
    # Volumes (each instance's root volume)
    "DescribeVolumes",
    # Network interfaces
    "CreateNetworkInterface", "DeleteNetworkInterface", "DescribeNetworkInterfaces",
    "AttachNetworkInterface", "DetachNetworkInterface", "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses", "ModifyNetworkInterfaceAttribute",
    "DescribeNetworkInterfaceAttribute",
    # Security groups
    "CreateSecurityGroup", "DeleteSecurityGroup", "DescribeSecurityGroups",
    "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress", "RevokeSecurityGroupEgress",
    "DescribeSecurityGroupRules", "ModifySecurityGroupRules",
    "UpdateSecurityGroupRuleDescriptionsIngress", "UpdateSecurityGroupRuleDescriptionsEgress",
    # Network ACLs
    "CreateNetworkAcl", "DeleteNetworkAcl", "DescribeNetworkAcls", "CreateNetworkAclEntry",
    "ReplaceNetworkAclEntry", "DeleteNetworkAclEntry", "ReplaceNetworkAclAssociation",
    # Route tables
    "CreateRouteTable", "DeleteRouteTable", "DescribeRouteTables", "CreateRoute",
    "ReplaceRoute", "DeleteRoute", "AssociateRouteTable", "DisassociateRouteTable",
    "ReplaceRouteTableAssociation",
    # Internet gateways
    "CreateInternetGateway", "DeleteInternetGateway", "DescribeInternetGateways",
    "AttachInternetGateway", "DetachInternetGateway",
    # Elastic IPs
    "AllocateAddress", "ReleaseAddress", "AssociateAddress", "DisassociateAddress",
    "DescribeAddresses",
    # NAT gateways
    "CreateNatGateway", "DeleteNatGateway", "DescribeNatGateways",
    # VPC peering
    "CreateVpcPeeringConnection", "AcceptVpcPeeringConnection",
    "RejectVpcPeeringConnection", "DeleteVpcPeeringConnection",
    "DescribeVpcPeeringConnections",
    # DHCP options
    "CreateDhcpOptions", "DeleteDhcpOptions", "AssociateDhcpOptions", "DescribeDhcpOptions",
    # Flow logs
    "CreateFlowLogs", "DeleteFlowLogs", "DescribeFlowLogs",
    # Managed prefix lists
    "CreateManagedPrefixList", "DescribeManagedPrefixLists", "ModifyManagedPrefixList",
    "DeleteManagedPrefixList", "GetManagedPrefixListEntries",
    "GetManagedPrefixListAssociations",
    # Tags
    "CreateTags", "DeleteTags", "DescribeTags",
    # Discovery
    "DescribeHosts", "DescribeAvailabilityZones", "DescribeRegions",
    "DescribeAccountAttributes",
    # Key pairs
    "CreateKeyPair", "ImportKeyPair", "DescribeKeyPairs", "DeleteKeyPair",
    # Launch templates
    "CreateLaunchTemplate", "DescribeLaunchTemplates", "ModifyLaunchTemplate",
    "DeleteLaunchTemplate", "CreateLaunchTemplateVersion", "DescribeLaunchTemplateVersions",
    "DeleteLaunchTemplateVersions",
]

SCALARS = {"string", "integer", "long", "boolean", "timestamp", "double", "float", "blob"}
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..", "crates", "softvpc-ec2-protocol", "model", "ec2-vpc.json",
)


def load_service_model():
    base = os.path.join(os.path.dirname(botocore.__file__), "data", "ec2", "2016-11-15")
    plain = os.path.join(base, "service-2.json")
    if os.path.exists(plain):
        with open(plain, encoding="utf-8") as f:
            return json.load(f), plain
    with gzip.open(plain + ".gz", "rt", encoding="utf-8") as f:
        return json.load(f), plain + ".gz"


def trim(model):
    shapes = model["shapes"]
    out_shapes = {}
    pending = []

    def reach(name):
        if name not in out_shapes and name not in pending:
            pending.append(name)

    ops = {}
    for op_name in OPERATIONS:
        op = model["operations"].get(op_name)
        if op is None:
            sys.exit(f"operation {op_name} is not in the botocore model")
        entry = {}
        for key in ("input", "output"):
            if key in op:
                entry[key] = op[key]["shape"]
                reach(op[key]["shape"])
        ops[op_name] = entry

    while pending:
        name = pending.pop()
        src = shapes[name]
        kind = src["type"]
        if kind not in SCALARS | {"structure", "list"}:
            sys.exit(f"shape {name} has type {kind}, which the EC2 protocol crate does not handle")
        if src.get("flattened"):
            sys.exit(f"shape {name} is a flattened list: not used by EC2, not handled")
        dst = {"type": kind}
        for key in ("min", "max"):
            if key in src:
                dst[key] = src[key]
        if "enum" in src:
            dst["enum"] = list(src["enum"])
        if kind == "structure":
            dst["required"] = list(src.get("required", []))
            members = []
            for mname, mref in src["members"].items():
                target = shapes[mref["shape"]]
                member = {"name": mname, "shape": mref["shape"]}
                # Member traits override the target shape's (botocore's resolve_shape_ref).
                loc = mref.get("locationName", target.get("locationName"))
                if loc is not None:
                    member["locationName"] = loc
                if "queryName" in mref:
                    member["queryName"] = mref["queryName"]
                if mref.get("idempotencyToken"):
                    member["idempotencyToken"] = True
                members.append(member)
                reach(mref["shape"])
            dst["members"] = members
        elif kind == "list":
            mref = src["member"]
            member = {"shape": mref["shape"]}
            loc = mref.get("locationName", shapes[mref["shape"]].get("locationName"))
            if loc is not None:
                member["locationName"] = loc
            dst["member"] = member
            reach(mref["shape"])
        out_shapes[name] = dst
    return ops, out_shapes


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    model, source = load_service_model()
    ops, shapes = trim(model)
    out = {
        "botocoreVersion": botocore.__version__,
        "apiVersion": model["metadata"]["apiVersion"],
        "protocol": model["metadata"]["protocol"],
        "xmlNamespace": model["metadata"]["xmlNamespace"].rstrip("/") + "/",
        "operations": {k: ops[k] for k in sorted(ops)},
        "shapes": {k: shapes[k] for k in sorted(shapes)},
    }
    text = json.dumps(out, indent=1, sort_keys=False, ensure_ascii=False) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(
        f"wrote {os.path.normpath(args.out)}: {len(ops)} operations, {len(shapes)} shapes, "
        f"{len(text)} bytes, from botocore {botocore.__version__} ({source})"
    )


if __name__ == "__main__":
    main()
