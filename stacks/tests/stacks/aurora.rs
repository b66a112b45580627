//! The Aurora state store and its network: Serverless v2 behind RDS Proxy in a created or an
//! existing VPC, the local PostgreSQL server in `local`, and what the functions in the VPC may
//! reach.

use crate::common;

use sagaform_stacks::Pattern;
use sagaform_stacks::cfn::{Expr, Properties};
use sagaform_stacks::config::StoreKind;
use sagaform_stacks::fixtures::{example_env, example_env_with};

use common::{all_examples, env_var, statements_for, template, types};

#[test]
fn aurora_runs_serverless_v2_behind_rds_proxy_in_a_created_vpc() {
    let env = example_env("staging");
    let template = template(Pattern::Orchestrator, &env);
    let types = types(&template);
    for expected in [
        "AWS::EC2::VPC",
        "AWS::EC2::NatGateway",
        "AWS::RDS::DBSubnetGroup",
        "AWS::RDS::DBCluster",
        "AWS::RDS::DBInstance",
        "AWS::RDS::DBProxy",
        "AWS::RDS::DBProxyTargetGroup",
    ] {
        assert!(types.contains(&expected), "missing {expected}");
    }
    assert_eq!(
        types.iter().filter(|t| **t == "AWS::EC2::Subnet").count(),
        4
    );
    let Properties::DbCluster(cluster) = &template.resources["DatabaseCluster"].properties else {
        panic!()
    };
    assert!(
        cluster.manage_master_user_password
            && cluster.storage_encrypted
            && !cluster.deletion_protection
    );
    let Properties::DbInstance(instance) = &template.resources["DatabaseInstance"].properties
    else {
        panic!()
    };
    assert_eq!(instance.db_instance_class, "db.serverless");
    let Properties::Function(api) = &template.resources["ApiFunction"].properties else {
        panic!()
    };
    let vpc = api
        .vpc_config
        .as_ref()
        .expect("the api function reaches the proxy from the VPC");
    assert!(vpc.security_group_ids[0].is_ref_to("FunctionSecurityGroup"));
    assert!(
        template.outputs.contains_key("DatabaseProxyEndpoint")
            && template.outputs.contains_key("DatabaseClusterEndpoint")
    );
}

#[test]
fn aurora_in_production_uses_the_existing_network_and_deletion_protection() {
    let env = example_env("prod");
    assert_eq!(env.store(Pattern::Orchestrator), StoreKind::Aurora);
    let template = template(Pattern::Orchestrator, &env);
    assert!(!types(&template).contains(&"AWS::EC2::VPC"));
    let Properties::DbCluster(cluster) = &template.resources["DatabaseCluster"].properties else {
        panic!()
    };
    assert!(cluster.deletion_protection);
    let Properties::DbSubnetGroup(group) = &template.resources["DatabaseSubnetGroup"].properties
    else {
        panic!()
    };
    assert_eq!(
        group.subnet_ids,
        [
            Expr::str("subnet-0123456789abcdef0"),
            Expr::str("subnet-0fedcba9876543210")
        ]
    );
}

#[test]
fn aurora_in_local_is_the_local_postgresql_server() {
    let template = template(Pattern::Orchestrator, &example_env("local"));
    assert!(
        !types(&template)
            .iter()
            .any(|t| t.starts_with("AWS::RDS::") || t.starts_with("AWS::EC2::"))
    );
    assert!(
        env_var(&template, "ApiFunction", "SAGAFORM_DATABASE_URL")
            .unwrap()
            .is_ref_to("LocalDatabaseUrl")
    );
    let default = template.parameters["LocalDatabaseUrl"]
        .default
        .as_deref()
        .unwrap();
    assert_eq!(
        default, "postgres://postgres@127.0.0.1:5432/sagaform_orchestrator",
        "one database per pattern"
    );
}

#[test]
fn vpc_functions_reach_only_the_proxy_https_and_the_saas_ports() {
    let env = example_env_with(
        "staging",
        "[saas.payments]\nurl = \"https://payments.example.com:8443/v1\"\n",
    )
    .unwrap();
    let orchestrator = template(Pattern::Orchestrator, &env);
    let Properties::SecurityGroup(group) =
        &orchestrator.resources["FunctionSecurityGroup"].properties
    else {
        panic!()
    };
    let rules: Vec<(&str, Option<i32>, Option<&str>, bool)> = group
        .security_group_egress
        .iter()
        .map(|e| {
            (
                e.ip_protocol.as_str(),
                e.from_port,
                e.cidr_ip.as_deref(),
                e.destination_security_group_id
                    .as_ref()
                    .is_some_and(|g| g.is_ref_to("ProxySecurityGroup")),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("tcp", Some(5432), None, true),
            ("tcp", Some(443), Some("0.0.0.0/0"), false),
            ("tcp", Some(8443), Some("0.0.0.0/0"), false),
        ]
    );
    // Nothing is open to the world inbound: ingress only ever names a security group.
    for (pattern, env) in all_examples() {
        for resource in template(pattern, &env).resources.values() {
            if let Properties::SecurityGroupIngress(ingress) = &resource.properties {
                assert!(matches!(ingress.source_security_group_id, Expr::Ref(_)));
            }
        }
    }
    let Properties::DbProxy(proxy) = &orchestrator.resources["DatabaseProxy"].properties else {
        panic!()
    };
    assert!(proxy.require_tls);
    let secret_readers = ["ApiFunctionRole", "DatabaseProxyRole"].map(|role| {
        statements_for(&orchestrator, role, "secretsmanager")
            .iter()
            .flat_map(|s| s.resource.clone())
            .collect::<Vec<_>>()
    });
    for resources in secret_readers {
        assert_eq!(
            resources,
            [Expr::get_att(
                "DatabaseCluster",
                "MasterUserSecret.SecretArn"
            )]
        );
    }
}
