//! The Aurora state store and its network: Serverless v2 behind RDS Proxy in a created or an
//! existing VPC, the local PostgreSQL server in `local`, and what the functions in the VPC may
//! reach.

use crate::common;

use sagaform_stacks::Pattern;
use sagaform_stacks::cfn::{DeletionPolicy, Expr, Properties};
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
        default, "postgres://sagaform_app@127.0.0.1:5432/sagaform_orchestrator",
        "one database per pattern, reached as the application role"
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
    let secrets_read_by = |role: &str| {
        statements_for(&orchestrator, role, "secretsmanager")
            .iter()
            .flat_map(|s| s.resource.clone())
            .collect::<Vec<_>>()
    };
    let master = Expr::get_att("DatabaseCluster", "MasterUserSecret.SecretArn");
    let app = Expr::reference("DatabaseAppSecret");
    // The functions read only the application role's secret; the proxy and the migration step
    // both.
    assert_eq!(
        secrets_read_by("ApiFunctionRole"),
        std::slice::from_ref(&app)
    );
    for role in ["DatabaseProxyRole", "MigrateFunctionRole"] {
        assert_eq!(
            secrets_read_by(role),
            [master.clone(), app.clone()],
            "{role}"
        );
    }
    let secrets: Vec<&Expr> = proxy.auth.iter().map(|a| &a.secret_arn).collect();
    assert_eq!(secrets, [&master, &app]);
}

#[test]
fn the_migration_step_runs_as_a_custom_resource_before_the_functions_with_a_generated_app_secret() {
    for (pattern, env) in all_examples() {
        let template = template(pattern, &env);
        let aurora_in_aws = env.store(pattern) == StoreKind::Aurora && !env.is_local();
        assert_eq!(
            template.resources.contains_key("DatabaseMigrations"),
            aurora_in_aws,
            "{pattern} {}",
            env.name
        );
        assert_eq!(
            template.parameters.contains_key("MigrateCodeKey"),
            aurora_in_aws,
            "{pattern} {}",
            env.name
        );
        if !aurora_in_aws {
            assert!(!template.resources.contains_key("MigrateFunction"));
            continue;
        }
        let Properties::DatabaseMigrations(migrations) =
            &template.resources["DatabaseMigrations"].properties
        else {
            panic!()
        };
        assert!(
            migrations
                .service_token
                .is_get_att_of("MigrateFunction", "Arn")
        );
        assert_eq!(migrations.migrations_hash.len(), 16);
        // A replaced cluster, a new application password or new step code runs it again, and
        // CloudFormation waits minutes for its answer, not an hour.
        assert_eq!(migrations.cluster_id, Expr::reference("DatabaseCluster"));
        assert_eq!(
            migrations.app_secret_arn,
            Expr::reference("DatabaseAppSecret")
        );
        assert_eq!(
            migrations.migrate_code_key,
            Expr::reference("MigrateCodeKey")
        );
        assert!((300..=900).contains(&migrations.service_timeout));
        // It reaches the cluster through the proxy's target group, and Secrets Manager and the
        // response URL through the network's way out: every route, route table association and
        // gateway attachment must stand as long as it does, on create, delete and rollback.
        let waits_for = &template.resources["DatabaseMigrations"].depends_on;
        assert!(waits_for.contains(&"DatabaseProxyTargetGroup".to_owned()));
        for (id, resource) in &template.resources {
            if matches!(
                resource.properties,
                Properties::Route(_)
                    | Properties::SubnetRouteTableAssociation(_)
                    | Properties::VpcGatewayAttachment(_)
            ) {
                assert!(waits_for.contains(id), "{pattern} {} {id}", env.name);
            }
        }
        // Every function but the step itself waits for the schema.
        for (id, resource) in &template.resources {
            if let Properties::Function(_) = resource.properties {
                assert_eq!(
                    resource
                        .depends_on
                        .contains(&"DatabaseMigrations".to_owned()),
                    id != "MigrateFunction",
                    "{pattern} {} {id}",
                    env.name
                );
            }
        }
        let Properties::Secret(secret) = &template.resources["DatabaseAppSecret"].properties else {
            panic!()
        };
        let generated = &secret.generate_secret_string;
        assert_eq!(
            generated.secret_string_template,
            r#"{"username":"sagaform_app"}"#
        );
        assert_eq!(generated.generate_string_key, "password");
        for breaks_a_url in ['@', '/', ':', '"', '\'', '\\', '%', '?', '#', ' '] {
            assert!(generated.exclude_characters.contains(breaks_a_url));
        }
    }
}

#[test]
fn the_cluster_leaves_a_final_snapshot_so_destroy_can_delete_its_network() {
    let staging = template(Pattern::Orchestrator, &example_env("staging"));
    let cluster = &staging.resources["DatabaseCluster"];
    assert_eq!(cluster.deletion_policy, Some(DeletionPolicy::Snapshot));
    assert_eq!(
        cluster.update_replace_policy,
        Some(DeletionPolicy::Snapshot)
    );
    // Nothing the cluster depends on is kept, so nothing is left holding the subnets.
    for (id, resource) in &staging.resources {
        if matches!(
            resource.properties,
            Properties::DbSubnetGroup(_) | Properties::SecurityGroup(_) | Properties::Subnet(_)
        ) {
            assert_eq!(resource.deletion_policy, None, "{id}");
        }
    }
}

#[test]
fn every_instance_has_performance_insights_which_the_runbook_cites() {
    for (pattern, env) in all_examples() {
        let synthesized = sagaform_stacks::synthesize(pattern, &env).unwrap();
        let template = &synthesized.template;
        let instances: Vec<_> = template
            .resources
            .iter()
            .filter_map(|(id, r)| match &r.properties {
                Properties::DbInstance(instance) => Some((id, instance)),
                _ => None,
            })
            .collect();
        if instances.is_empty() {
            continue;
        }
        assert!(
            synthesized
                .runbook_markdown
                .contains("Performance Insights"),
            "{pattern} {}",
            env.name
        );
        for (id, instance) in instances {
            assert!(
                instance.enable_performance_insights,
                "{pattern} {} {id}",
                env.name
            );
            assert_eq!(
                instance.performance_insights_retention_period,
                Some(7),
                "{pattern} {} {id}: the free tier",
                env.name
            );
        }
    }
}

#[test]
fn readers_follow_the_config_and_fail_over_after_the_writer() {
    let staging = template(Pattern::Orchestrator, &example_env("staging"));
    assert!(!staging.resources.contains_key("DatabaseReaderInstance1"));
    let env = example_env_with("staging", "[aurora]\nreaders = 2\n").unwrap();
    let template = template(Pattern::Orchestrator, &env);
    let Properties::DbInstance(writer) = &template.resources["DatabaseInstance"].properties else {
        panic!()
    };
    assert_eq!(writer.promotion_tier, Some(0));
    for id in ["DatabaseReaderInstance1", "DatabaseReaderInstance2"] {
        let reader = &template.resources[id];
        let Properties::DbInstance(instance) = &reader.properties else {
            panic!("{id}")
        };
        assert_eq!(instance.db_instance_class, "db.serverless");
        assert_eq!(instance.promotion_tier, Some(1));
        assert!(instance.db_cluster_identifier.is_ref_to("DatabaseCluster"));
        assert_eq!(reader.depends_on, ["DatabaseInstance"]);
    }
    assert!(!template.resources.contains_key("DatabaseReaderInstance3"));
    // The prod example runs one reader.
    let prod = sagaform_stacks::fixtures::example_env("prod");
    assert!(
        self::template(Pattern::Orchestrator, &prod)
            .resources
            .contains_key("DatabaseReaderInstance1")
    );
}

#[test]
fn per_az_nat_gives_each_private_subnet_its_own_zones_gateway() {
    let single = template(Pattern::Orchestrator, &example_env("staging"));
    let count = |t: &sagaform_stacks::cfn::Template, ty: &str| {
        types(t).iter().filter(|x| **x == ty).count()
    };
    assert_eq!(count(&single, "AWS::EC2::NatGateway"), 1);
    let env = example_env_with("staging", "[aurora.network]\nnat_gateways = \"per_az\"\n").unwrap();
    let per_az = template(Pattern::Orchestrator, &env);
    assert_eq!(count(&per_az, "AWS::EC2::NatGateway"), 2);
    assert_eq!(count(&per_az, "AWS::EC2::EIP"), 2);
    // Private subnet -> route table -> default route -> NAT gateway -> public subnet: each
    // private subnet leaves through the public subnet of its own zone.
    let routes_of = |subnet: &str| -> String {
        let table = per_az
            .resources
            .values()
            .find_map(|r| match &r.properties {
                Properties::SubnetRouteTableAssociation(a) if a.subnet_id.is_ref_to(subnet) => {
                    Some(a.route_table_id.clone())
                }
                _ => None,
            })
            .unwrap();
        let nat = per_az
            .resources
            .values()
            .find_map(|r| match &r.properties {
                Properties::Route(route) if route.route_table_id == table => {
                    route.nat_gateway_id.clone()
                }
                _ => None,
            })
            .unwrap();
        let Expr::Ref(nat) = nat else { panic!() };
        let Properties::NatGateway(gateway) = &per_az.resources[&nat].properties else {
            panic!()
        };
        let Expr::Ref(public) = &gateway.subnet_id else {
            panic!()
        };
        public.clone()
    };
    assert_eq!(routes_of("PrivateSubnetA"), "PublicSubnetA");
    assert_eq!(routes_of("PrivateSubnetB"), "PublicSubnetB");
    // Zone A keeps the single gateway's ids, so turning per_az on replaces nothing.
    for id in ["NatGateway", "NatGatewayElasticIp", "PrivateRouteTable"] {
        assert!(per_az.resources.contains_key(id), "{id}");
    }
}
