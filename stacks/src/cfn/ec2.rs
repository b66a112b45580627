//! `AWS::EC2::*` resources: the VPC Aurora and the functions reaching it live in.

use serde::Serialize;

use super::{Expr, Tag};

/// `AWS::EC2::VPC`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Vpc {
    /// Address range.
    pub cidr_block: String,
    /// Instances get DNS names (RDS endpoints need it).
    pub enable_dns_hostnames: bool,
    /// The Amazon DNS server answers.
    pub enable_dns_support: bool,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// `AWS::EC2::Subnet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Subnet {
    /// The VPC.
    pub vpc_id: Expr,
    /// Address range.
    pub cidr_block: Expr,
    /// Availability zone.
    pub availability_zone: Expr,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// `AWS::EC2::InternetGateway`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InternetGateway {
    /// Tags.
    pub tags: Vec<Tag>,
}

/// `AWS::EC2::VPCGatewayAttachment`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcGatewayAttachment {
    /// The VPC.
    pub vpc_id: Expr,
    /// The gateway.
    pub internet_gateway_id: Expr,
}

/// `AWS::EC2::RouteTable`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteTable {
    /// The VPC.
    pub vpc_id: Expr,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// `AWS::EC2::Route`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Route {
    /// The table.
    pub route_table_id: Expr,
    /// Destination.
    pub destination_cidr_block: String,
    /// Via an internet gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_id: Option<Expr>,
    /// Via a NAT gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_gateway_id: Option<Expr>,
}

/// `AWS::EC2::SubnetRouteTableAssociation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SubnetRouteTableAssociation {
    /// The subnet.
    pub subnet_id: Expr,
    /// The table.
    pub route_table_id: Expr,
}

/// `AWS::EC2::EIP`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Eip {
    /// `vpc`.
    pub domain: String,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// `AWS::EC2::NatGateway`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NatGateway {
    /// The Elastic IP.
    pub allocation_id: Expr,
    /// A public subnet.
    pub subnet_id: Expr,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// `AWS::EC2::SecurityGroup`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroup {
    /// What it guards.
    pub group_description: String,
    /// The VPC.
    pub vpc_id: Expr,
    /// Allowed outbound traffic (empty: everything, EC2's default).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_group_egress: Vec<Egress>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// An egress rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Egress {
    /// Why.
    pub description: String,
    /// `tcp`, or `-1` for all.
    pub ip_protocol: String,
    /// First port (none with protocol `-1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_port: Option<i32>,
    /// Last port (none with protocol `-1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_port: Option<i32>,
    /// To addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr_ip: Option<String>,
    /// To a security group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_security_group_id: Option<Expr>,
}

/// `AWS::EC2::SecurityGroupIngress`: kept out of the groups so groups that point at each other
/// do not form a dependency cycle.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SecurityGroupIngress {
    /// The group receiving traffic.
    pub group_id: Expr,
    /// Why.
    pub description: String,
    /// `tcp`.
    pub ip_protocol: String,
    /// First port.
    pub from_port: i32,
    /// Last port.
    pub to_port: i32,
    /// From this group.
    pub source_security_group_id: Expr,
}
