//! The Aurora state store: Aurora PostgreSQL Serverless v2 reached through RDS Proxy, in a VPC
//! that sagaform creates (two private subnets for the database, the proxy and the functions; two
//! public subnets holding the NAT gateway, or one per availability zone, the functions use to
//! call the SaaS) or one named in the env config.
//!
//! Why RDS Proxy rather than the Data API: the functions keep the PostgreSQL driver and SQL the
//! tests run against a real PostgreSQL server, so local, test and cloud run the same code; the
//! proxy pools connections across however many Lambda instances run at once, which is what
//! protects a small Serverless v2 cluster from connection storms; and it fails over without the
//! functions noticing. The cost is a VPC for the functions (and a NAT gateway for the SaaS calls).
//!
//! In `local` there is no cluster: the functions get `SAGAFORM_DATABASE_URL` pointing at the
//! local PostgreSQL server (trust authentication, no password) through a template parameter,
//! as the application role `sagaform_app`, which the local environment's migration step creates.

use std::collections::BTreeMap;

use sagaform_contract::database::{APP_ROLE, MIGRATIONS, Migration};
use sagaform_contract::env as vars;
use sagaform_contract::template::{code_key_parameter, outputs};

use crate::Pattern;
use crate::cfn::cloudwatch::{ComparisonOperator, Statistic};
use crate::cfn::custom::DatabaseMigrations;
use crate::cfn::ec2::{
    Egress, Eip, InternetGateway, NatGateway, Route, RouteTable, SecurityGroup,
    SecurityGroupIngress, Subnet, SubnetRouteTableAssociation, Vpc, VpcGatewayAttachment,
};
use crate::cfn::iam::{Action, InlinePolicy, PolicyDocument, Role, Statement, actions};
use crate::cfn::lambda::VpcConfig;
use crate::cfn::rds::{
    AuthScheme, ConnectionPoolConfiguration, DbCluster, DbInstance, DbProxy, DbProxyTargetGroup,
    DbSubnetGroup, Engine, EngineFamily, IamAuth, ProxyAuth, ServerlessV2ScalingConfiguration,
};
use crate::cfn::secretsmanager::{GenerateSecretString, Secret};
use crate::cfn::{CfnError, DeletionPolicy, Expr, Parameter, Properties, Resource, Tag, Template};
use crate::config::{EnvConfig, FunctionRole, NatGateways, Network, VpcCidr};

use super::alerting::{AlarmSpec, Watched, add_sustained_alarm, dimension};
use super::{StackBuilder, StoreAccess, functions};

/// Master user of the cluster; its password lives only in the secret RDS manages.
pub const MASTER_USERNAME: &str = "sagaform_admin";
/// Parameter carrying the local database URL.
pub const LOCAL_DATABASE_URL_PARAMETER: &str = "LocalDatabaseUrl";
/// Logical id of the functions' security group, the only one the RDS Proxy admits.
pub(super) const FUNCTION_SECURITY_GROUP: &str = "FunctionSecurityGroup";
const CLUSTER: &str = "DatabaseCluster";
const PROXY: &str = "DatabaseProxy";
const WRITER: &str = "DatabaseInstance";
const APP_SECRET: &str = "DatabaseAppSecret";
/// The custom resource that runs the migration step.
pub const MIGRATIONS_RESOURCE: &str = "DatabaseMigrations";
/// Characters a generated password leaves out: quotes, backslash, `@`, `/`, `:`, `?`, `#`, `%`
/// and space would need escaping in a connection URL or a shell line.
const APP_PASSWORD_EXCLUDED: &str = "\"'\\@/:?#% `";
const POSTGRES_PORT: i32 = 5432;
const HTTPS_PORT: u16 = 443;

/// The database of `pattern` on the local PostgreSQL server: one per pattern, so that stacks of
/// different patterns never share rows, and `destroy` can drop it with its stack as it does
/// the emulated DynamoDB tables.
pub(super) fn local_database_name(env: &EnvConfig, pattern: Pattern) -> String {
    format!("{}_{}", env.aurora.database_name, pattern.name())
}

/// `local`: the functions use the local PostgreSQL server.
pub(super) fn add_local_database(stack: &mut StackBuilder<'_>) -> Result<StoreAccess, CfnError> {
    let mut parameter = Parameter::string(
        "URL of the local PostgreSQL server standing in for Aurora, as the application role (trust authentication: never a password).",
    );
    // The functions log in as the least-privilege application role locally too, so a statement
    // that would need more than data manipulation fails here before it fails in AWS.
    parameter.default = Some(format!(
        "postgres://{}@127.0.0.1:5432/{}",
        APP_ROLE,
        local_database_name(stack.env, stack.pattern)
    ));
    parameter.allowed_pattern = Some("^postgres(ql)?://[^:@/]+@[^/]+/.+$".to_owned());
    parameter.constraint_description =
        Some("a postgres:// URL with a user name and no password".to_owned());
    stack
        .template
        .add_parameter(LOCAL_DATABASE_URL_PARAMETER, parameter)?;
    Ok(StoreAccess {
        variables: vec![(
            vars::DATABASE_URL.to_owned(),
            Expr::reference(LOCAL_DATABASE_URL_PARAMETER),
        )],
        statements: Vec::new(),
        vpc: None,
    })
}

/// The network, cluster, proxy, alarms and outputs.
pub(super) fn add_aurora(stack: &mut StackBuilder<'_>) -> Result<StoreAccess, CfnError> {
    let env = stack.env;
    let (vpc_id, private_subnets) = match &env.aurora.network {
        Network::Create {
            vpc_cidr,
            nat_gateways,
        } => add_network(stack, vpc_cidr, *nat_gateways)?,
        Network::Existing { vpc_id, subnet_ids } => (
            Expr::str(vpc_id),
            subnet_ids.iter().map(Expr::str).collect(),
        ),
    };
    add_security_groups(stack, vpc_id)?;
    add_security_group_ingress(stack)?;
    add_cluster(stack, &private_subnets)?;
    let secret_arn = Expr::get_att(CLUSTER, DbCluster::SECRET_ARN_ATTRIBUTE);
    add_app_secret(stack)?;
    let app_secret_arn = Expr::reference(APP_SECRET);
    add_proxy_role(stack, &secret_arn, &app_secret_arn)?;
    add_proxy(stack, &secret_arn, &app_secret_arn, &private_subnets)?;
    add_database_alarms(stack)?;
    add_database_outputs(stack, &secret_arn)?;
    let owner = migrate_function_access(env, &secret_arn, &app_secret_arn, &private_subnets);
    add_migrations(stack, &owner)?;
    Ok(function_access(env, app_secret_arn, private_subnets))
}

/// The secret of the application role the functions log in as: its user name in the template,
/// its password generated by Secrets Manager without the characters that break a connection
/// string or a shell line.
fn add_app_secret(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    stack.add(
        APP_SECRET,
        Secret {
            description: format!(
                "Credentials of the {APP_ROLE} database role the functions log in as (data manipulation on the saga tables only)."
            ),
            generate_secret_string: GenerateSecretString {
                secret_string_template: format!("{{\"username\":\"{APP_ROLE}\"}}"),
                generate_string_key: "password".to_owned(),
                password_length: 32,
                exclude_characters: APP_PASSWORD_EXCLUDED.to_owned(),
            },
            tags: stack.tags.list(),
        },
    )
}

/// The migration step: the migrate function (in the VPC, reading the owner's and the
/// application role's secrets) and the custom resource through which CloudFormation runs it
/// on every deploy that changes the migrations. The functions wait for it
/// ([`functions_wait_for_migrations`]).
fn add_migrations(stack: &mut StackBuilder<'_>, owner: &StoreAccess) -> Result<(), CfnError> {
    let function = functions::add_function(
        stack,
        FunctionRole::Migrate,
        "Applies the database migrations and grants the application role, as the database's owner, when CloudFormation creates or updates the DatabaseMigrations resource.",
        owner,
        &[],
    )?;
    // The step connects through the proxy, which reaches the cluster only once its target group
    // is registered. Its path out of a created network (routes, route table associations, the
    // internet gateway's attachment) must come before it and, when the stack is deleted or a
    // failed creation rolled back, go after it, else its answer never arrives:
    // [`functions_wait_for_migrations`] adds those once the network is in the template.
    stack.add(
        MIGRATIONS_RESOURCE,
        Resource::new(DatabaseMigrations {
            service_token: Expr::get_att(&function.logical_id, "Arn"),
            service_timeout: MIGRATIONS_SERVICE_TIMEOUT_SECONDS,
            migrations_hash: migrations_hash(MIGRATIONS),
            cluster_id: Expr::reference(CLUSTER),
            app_secret_arn: Expr::reference(APP_SECRET),
            migrate_code_key: Expr::reference(code_key_parameter(FunctionRole::Migrate.name())),
        })
        .depends_on(["DatabaseProxyTargetGroup"]),
    )
}

/// Makes every function but the migrate function wait for the migration step, so none starts
/// on a schema older than it needs, and the step wait for every route, route table association
/// and gateway attachment of the stack's network, so its way out to Secrets Manager and to
/// CloudFormation's response URL stands as long as it does. A no-op for a stack without one.
pub(super) fn functions_wait_for_migrations(template: &mut Template) {
    if !template.resources.contains_key(MIGRATIONS_RESOURCE) {
        return;
    }
    let migrate = FunctionRole::Migrate.logical_id();
    let mut routing = Vec::new();
    for (id, resource) in template.resources.iter_mut() {
        match resource.properties {
            Properties::Function(_) if *id != migrate => {
                resource.depends_on.push(MIGRATIONS_RESOURCE.to_owned());
            }
            Properties::Route(_)
            | Properties::SubnetRouteTableAssociation(_)
            | Properties::VpcGatewayAttachment(_) => routing.push(id.clone()),
            _ => {}
        }
    }
    if let Some(step) = template.resources.get_mut(MIGRATIONS_RESOURCE) {
        step.depends_on.extend(routing);
    }
}

/// Seconds CloudFormation waits for the migration step's answer: the migrate function's
/// timeout (300 s) with room for its invocation, not CloudFormation's default hour.
const MIGRATIONS_SERVICE_TIMEOUT_SECONDS: u32 = 600;

/// A hash of the migrations' versions, names and text (64-bit FNV-1a, hex): stable across builds and
/// platforms, so the template changes exactly when a migration does.
fn migrations_hash(migrations: &[Migration]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for migration in migrations {
        let version = migration.version.to_string();
        for field in [version.as_str(), migration.name, migration.sql] {
            for byte in field.bytes().chain([0]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    format!("{hash:016x}")
}

/// The three security groups (functions, cluster, proxy), so that only the functions reach the
/// proxy and only the proxy reaches the cluster.
fn add_security_groups(stack: &mut StackBuilder<'_>, vpc_id: Expr) -> Result<(), CfnError> {
    stack.add(
        FUNCTION_SECURITY_GROUP,
        SecurityGroup {
            group_description:
                "sagaform functions: out to the database proxy and, through NAT, to AWS APIs and the SaaS"
                    .to_owned(),
            vpc_id: vpc_id.clone(),
            security_group_egress: function_egress(stack.env),
            tags: stack.tags.list(),
        },
    )?;
    stack.add(
        "DatabaseSecurityGroup",
        SecurityGroup {
            group_description: "sagaform Aurora cluster: in from the proxy only".to_owned(),
            vpc_id: vpc_id.clone(),
            security_group_egress: Vec::new(),
            tags: stack.tags.list(),
        },
    )?;
    stack.add(
        "ProxySecurityGroup",
        SecurityGroup {
            group_description: "sagaform RDS Proxy: in from the functions, out to the cluster"
                .to_owned(),
            vpc_id,
            security_group_egress: vec![Egress {
                description: "PostgreSQL to the cluster".to_owned(),
                ip_protocol: "tcp".to_owned(),
                from_port: Some(POSTGRES_PORT),
                to_port: Some(POSTGRES_PORT),
                cidr_ip: None,
                destination_security_group_id: Some(Expr::reference("DatabaseSecurityGroup")),
            }],
            tags: stack.tags.list(),
        },
    )
}

/// The ingress rules of the proxy and the cluster, as resources of their own: inline, they would
/// make the security groups that refer to each other a dependency cycle.
fn add_security_group_ingress(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    stack.add(
        "ProxyIngressFromFunctions",
        SecurityGroupIngress {
            group_id: Expr::reference("ProxySecurityGroup"),
            description: "PostgreSQL from the functions".to_owned(),
            ip_protocol: "tcp".to_owned(),
            from_port: POSTGRES_PORT,
            to_port: POSTGRES_PORT,
            source_security_group_id: Expr::reference("FunctionSecurityGroup"),
        },
    )?;
    stack.add(
        "DatabaseIngressFromProxy",
        SecurityGroupIngress {
            group_id: Expr::reference("DatabaseSecurityGroup"),
            description: "PostgreSQL from the proxy".to_owned(),
            ip_protocol: "tcp".to_owned(),
            from_port: POSTGRES_PORT,
            to_port: POSTGRES_PORT,
            source_security_group_id: Expr::reference("ProxySecurityGroup"),
        },
    )
}

/// Days Performance Insights keeps its data: 7 is the free tier.
const PERFORMANCE_INSIGHTS_RETENTION_DAYS: u32 = 7;
/// Seconds between enhanced monitoring samples: the instance's OS metrics (CPU steal, memory,
/// swap, processes) that the capacity and connections runbook sections need next to Performance
/// Insights, at a minute's grain (finer grains cost more CloudWatch Logs ingestion).
const ENHANCED_MONITORING_INTERVAL_SECONDS: u32 = 60;
/// The log group RDS writes enhanced monitoring to, in every account and region.
pub const ENHANCED_MONITORING_LOG_GROUP: &str = "RDSOSMetrics";
/// Logical id of the role RDS publishes enhanced monitoring with.
const MONITORING_ROLE: &str = "DatabaseMonitoringRole";

/// What happens to the cluster when the stack is deleted or the cluster replaced: outside
/// `local`, a final snapshot. `Retain` would keep the cluster running, and with it its subnet
/// group, security group and subnets, which the stack then fails to delete (DELETE_FAILED); a
/// snapshot keeps the data and lets everything else go.
fn cluster_policy(env: &EnvConfig) -> DeletionPolicy {
    if env.retain_data() {
        DeletionPolicy::Snapshot
    } else {
        DeletionPolicy::Delete
    }
}

/// The subnet group, the Serverless v2 cluster (encrypted, its master password managed by RDS,
/// snapshotted on deletion outside `local`), its writer and the configured readers.
fn add_cluster(stack: &mut StackBuilder<'_>, private_subnets: &[Expr]) -> Result<(), CfnError> {
    let env = stack.env;
    stack.add(
        "DatabaseSubnetGroup",
        DbSubnetGroup {
            description: "Private subnets of the sagaform Aurora cluster".to_owned(),
            subnet_ids: private_subnets.to_vec(),
            tags: stack.tags.list(),
        },
    )?;
    let cluster = DbCluster {
        engine: Engine::AuroraPostgresql,
        engine_version: env.aurora.engine_version.clone(),
        database_name: env.aurora.database_name.clone(),
        master_username: MASTER_USERNAME.to_owned(),
        manage_master_user_password: true,
        storage_encrypted: true,
        deletion_protection: env.production,
        serverless_v2_scaling_configuration: ServerlessV2ScalingConfiguration {
            min_capacity: env.aurora.min_capacity,
            max_capacity: env.aurora.max_capacity,
        },
        db_subnet_group_name: Expr::reference("DatabaseSubnetGroup"),
        vpc_security_group_ids: vec![Expr::reference("DatabaseSecurityGroup")],
        backup_retention_period: env.aurora.backup_retention_days,
        copy_tags_to_snapshot: true,
        tags: stack.tags.list(),
    };
    stack.add(
        CLUSTER,
        Resource::new(cluster).with_policies(cluster_policy(env)),
    )?;
    // The writer is promoted back first; readers in tier 1 scale with the writer's capacity, so
    // a failover lands on an instance already sized for the load.
    add_monitoring_role(stack)?;
    let tags = stack.tags.list();
    let instance = |promotion_tier: u32| DbInstance {
        db_instance_class: "db.serverless".to_owned(),
        engine: Engine::AuroraPostgresql,
        db_cluster_identifier: Expr::reference(CLUSTER),
        publicly_accessible: false,
        enable_performance_insights: true,
        performance_insights_retention_period: Some(PERFORMANCE_INSIGHTS_RETENTION_DAYS),
        monitoring_interval: ENHANCED_MONITORING_INTERVAL_SECONDS,
        monitoring_role_arn: Expr::get_att(MONITORING_ROLE, "Arn"),
        promotion_tier: Some(promotion_tier),
        tags: tags.clone(),
    };
    stack.add(WRITER, instance(0))?;
    for reader in 1..=env.aurora.readers {
        // Readers come after the writer, so the proxy's target group (which waits for the
        // writer) and the readers do not race the cluster's first instance.
        stack.add(
            &format!("DatabaseReaderInstance{reader}"),
            Resource::new(instance(1)).depends_on([WRITER]),
        )?;
    }
    Ok(())
}

/// The role RDS assumes to publish the instances' enhanced monitoring to CloudWatch Logs: the
/// actions of the AWS managed policy `AmazonRDSEnhancedMonitoringRole`, inline (roles here
/// carry their policies inline), on the one log group RDS writes OS metrics to, whose name AWS
/// fixes (`RDSOSMetrics`), rather than the managed policy's `RDS*`.
fn add_monitoring_role(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    let logs = |name| Action::new("logs", name);
    let rds_log_groups = Expr::sub(format!(
        "arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{ENHANCED_MONITORING_LOG_GROUP}"
    ));
    let rds_log_streams = Expr::sub(format!(
        "arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{ENHANCED_MONITORING_LOG_GROUP}:log-stream:*"
    ));
    stack.add(
        MONITORING_ROLE,
        Role {
            description: "Lets RDS publish the Aurora instances' enhanced monitoring (OS metrics) to CloudWatch Logs.".to_owned(),
            assume_role_policy_document: PolicyDocument::assumed_by("monitoring.rds.amazonaws.com"),
            policies: vec![InlinePolicy {
                policy_name: "publish-enhanced-monitoring".to_owned(),
                policy_document: PolicyDocument::new(vec![
                    Statement::allow(
                        "ManageRdsLogGroups",
                        vec![logs("CreateLogGroup"), logs("PutRetentionPolicy")],
                        vec![rds_log_groups],
                    ),
                    Statement::allow(
                        "WriteRdsLogStreams",
                        vec![
                            logs("CreateLogStream"),
                            logs("PutLogEvents"),
                            logs("DescribeLogStreams"),
                            logs("GetLogEvents"),
                        ],
                        vec![rds_log_streams],
                    ),
                ]),
            }],
            tags: stack.tags.list(),
        },
    )
}

/// The role RDS Proxy assumes to read the secrets of the users it logs in as: the master (for
/// the migration step) and the application role (for the functions).
fn add_proxy_role(
    stack: &mut StackBuilder<'_>,
    secret_arn: &Expr,
    app_secret_arn: &Expr,
) -> Result<(), CfnError> {
    stack.add(
        "DatabaseProxyRole",
        Role {
            description: "Lets RDS Proxy read the cluster's managed master secret and the application role's secret.".to_owned(),
            assume_role_policy_document: PolicyDocument::assumed_by("rds.amazonaws.com"),
            policies: vec![InlinePolicy {
                policy_name: "read-database-secrets".to_owned(),
                policy_document: PolicyDocument::new(vec![Statement::allow(
                    "ReadDatabaseSecrets",
                    vec![actions::SECRETSMANAGER_GET_SECRET_VALUE],
                    vec![secret_arn.clone(), app_secret_arn.clone()],
                )]),
            }],
            tags: stack.tags.list(),
        },
    )
}

/// The proxy the functions connect to (TLS only, in the private subnets) and its target group,
/// which pools connections to the cluster.
fn add_proxy(
    stack: &mut StackBuilder<'_>,
    secret_arn: &Expr,
    app_secret_arn: &Expr,
    private_subnets: &[Expr],
) -> Result<(), CfnError> {
    let auth = |secret: &Expr| ProxyAuth {
        auth_scheme: AuthScheme::Secrets,
        secret_arn: secret.clone(),
        iam_auth: IamAuth::Disabled,
    };
    stack.add(
        PROXY,
        DbProxy {
            name: Expr::sub("${AWS::StackName}-proxy"),
            engine_family: EngineFamily::Postgresql,
            auth: vec![auth(secret_arn), auth(app_secret_arn)],
            role_arn: Expr::get_att("DatabaseProxyRole", "Arn"),
            vpc_subnet_ids: private_subnets.to_vec(),
            vpc_security_group_ids: vec![Expr::reference("ProxySecurityGroup")],
            require_tls: true,
            tags: stack.tags.list(),
        },
    )?;
    stack.add(
        "DatabaseProxyTargetGroup",
        // The proxy can only register a cluster that has an available instance.
        Resource::new(DbProxyTargetGroup {
            proxy_name: Expr::reference(PROXY),
            target_group_name: "default".to_owned(),
            db_cluster_identifiers: vec![Expr::reference(CLUSTER)],
            connection_pool: ConnectionPoolConfiguration {
                max_connections_percent: 90,
                max_idle_connections_percent: 10,
                connection_borrow_timeout: 30,
            },
        })
        .depends_on([WRITER]),
    )
}

/// The endpoints and the secret, as outputs for operators and the ops tools.
fn add_database_outputs(stack: &mut StackBuilder<'_>, secret_arn: &Expr) -> Result<(), CfnError> {
    stack.output(
        "DatabaseClusterEndpoint",
        "Writer endpoint of the Aurora cluster.",
        Expr::get_att(CLUSTER, "Endpoint.Address"),
    )?;
    stack.output(
        outputs::DATABASE_PROXY_ENDPOINT,
        "RDS Proxy endpoint the functions connect to.",
        Expr::get_att(PROXY, "Endpoint"),
    )?;
    stack.output(
        outputs::DATABASE_SECRET_ARN,
        "Secrets Manager secret with the master credentials.",
        secret_arn.clone(),
    )
}

/// What the migrate function gets: what the other functions get, but the owner's (master)
/// secret to log in with, and the application role's secret to set its password from.
fn migrate_function_access(
    env: &EnvConfig,
    secret_arn: &Expr,
    app_secret_arn: &Expr,
    private_subnets: &[Expr],
) -> StoreAccess {
    let mut access = function_access(env, secret_arn.clone(), private_subnets.to_vec());
    access
        .variables
        .push((vars::DB_APP_SECRET_ARN.to_owned(), app_secret_arn.clone()));
    access.statements = vec![Statement::allow(
        "ReadDatabaseSecrets",
        vec![actions::SECRETSMANAGER_GET_SECRET_VALUE],
        vec![secret_arn.clone(), app_secret_arn.clone()],
    )];
    access
}

/// What the functions get: the proxy's address and the application role's secret as
/// variables, the right to read that secret (and no other), and a place in the private subnets
/// behind their security group.
fn function_access(env: &EnvConfig, secret_arn: Expr, private_subnets: Vec<Expr>) -> StoreAccess {
    StoreAccess {
        variables: vec![
            (vars::DB_HOST.to_owned(), Expr::get_att(PROXY, "Endpoint")),
            (
                vars::DB_PORT.to_owned(),
                Expr::str(POSTGRES_PORT.to_string()),
            ),
            (
                vars::DB_NAME.to_owned(),
                Expr::str(&env.aurora.database_name),
            ),
            (vars::DB_SECRET_ARN.to_owned(), secret_arn.clone()),
        ],
        statements: vec![Statement::allow(
            "ReadDatabaseSecret",
            vec![actions::SECRETSMANAGER_GET_SECRET_VALUE],
            vec![secret_arn],
        )],
        vpc: Some(VpcConfig {
            security_group_ids: vec![Expr::reference("FunctionSecurityGroup")],
            subnet_ids: private_subnets,
        }),
    }
}

/// Where the functions may connect: PostgreSQL on the proxy only, HTTPS anywhere (AWS APIs such
/// as Secrets Manager, SQS, Step Functions and Lambda, through the NAT gateway) and each SaaS on
/// its port. Nothing else, so a compromised dependency cannot reach arbitrary ports.
fn function_egress(env: &EnvConfig) -> Vec<Egress> {
    let tcp_anywhere = |port: u16, description: String| Egress {
        description,
        ip_protocol: "tcp".to_owned(),
        from_port: Some(i32::from(port)),
        to_port: Some(i32::from(port)),
        cidr_ip: Some("0.0.0.0/0".to_owned()),
        destination_security_group_id: None,
    };
    let mut egress = vec![
        Egress {
            description: "PostgreSQL to the database proxy".to_owned(),
            ip_protocol: "tcp".to_owned(),
            from_port: Some(POSTGRES_PORT),
            to_port: Some(POSTGRES_PORT),
            cidr_ip: None,
            destination_security_group_id: Some(Expr::reference("ProxySecurityGroup")),
        },
        tcp_anywhere(HTTPS_PORT, "HTTPS to AWS APIs and the SaaS".to_owned()),
    ];
    let mut other_ports: BTreeMap<u16, Vec<&str>> = BTreeMap::new();
    for (service, endpoint) in &env.saas {
        if let Some(port) = url_port(&endpoint.url).filter(|port| *port != HTTPS_PORT) {
            other_ports.entry(port).or_default().push(service);
        }
    }
    for (port, services) in other_ports {
        egress.push(tcp_anywhere(port, format!("SaaS {}", services.join(", "))));
    }
    egress
}

/// The port a URL connects to: explicit, or the scheme's default.
fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let explicit = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once("]:").map(|(_, port)| port),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    };
    match explicit {
        Some(port) => port.parse().ok(),
        None => match scheme {
            "https" => Some(HTTPS_PORT),
            "http" => Some(80),
            _ => None,
        },
    }
}

/// The NAT gateway (with its Elastic IP) and the private route table of each availability zone
/// that has its own: zone A always, zone B with a NAT gateway per zone. Zone A keeps the logical
/// ids of the single gateway, so turning `per_az` on adds zone B's and moves one subnet's route
/// table, without replacing the gateway the functions use meanwhile.
struct ZoneEgress {
    zone: &'static str,
    elastic_ip: &'static str,
    nat_gateway: &'static str,
    public_subnet: &'static str,
    route_table: &'static str,
    default_route: &'static str,
}

const ZONE_A_EGRESS: ZoneEgress = ZoneEgress {
    zone: "a",
    elastic_ip: "NatGatewayElasticIp",
    nat_gateway: "NatGateway",
    public_subnet: "PublicSubnetA",
    route_table: "PrivateRouteTable",
    default_route: "PrivateDefaultRoute",
};

const ZONE_B_EGRESS: ZoneEgress = ZoneEgress {
    zone: "b",
    elastic_ip: "NatGatewayElasticIpB",
    nat_gateway: "NatGatewayB",
    public_subnet: "PublicSubnetB",
    route_table: "PrivateRouteTableB",
    default_route: "PrivateDefaultRouteB",
};

/// Creates the VPC; returns its id and the private subnets.
fn add_network(
    stack: &mut StackBuilder<'_>,
    vpc_cidr: &VpcCidr,
    nat_gateways: NatGateways,
) -> Result<(Expr, Vec<Expr>), CfnError> {
    add_vpc_and_internet_gateway(stack, vpc_cidr)?;
    add_subnets(stack, vpc_cidr)?;
    add_public_route_table(stack)?;
    let zones: &[&ZoneEgress] = match nat_gateways {
        NatGateways::Single => &[&ZONE_A_EGRESS],
        NatGateways::PerAz => &[&ZONE_A_EGRESS, &ZONE_B_EGRESS],
    };
    for zone in zones {
        add_nat_gateway(stack, zone)?;
        add_private_route_table(stack, zone)?;
    }
    let private_b_table = zones
        .last()
        .map_or(ZONE_A_EGRESS.route_table, |z| z.route_table);
    add_route_table_associations(stack, private_b_table)?;
    Ok((
        Expr::reference("Vpc"),
        vec![
            Expr::reference("PrivateSubnetA"),
            Expr::reference("PrivateSubnetB"),
        ],
    ))
}

/// The stack's tags plus a `Name` tag `<stack>-<name>`, so the console tells the network's
/// pieces apart.
fn name_tag(stack: &StackBuilder<'_>, name: &str) -> Vec<Tag> {
    stack
        .tags
        .with("Name", format!("{}-{name}", stack.stack_name()))
        .list()
}

/// The VPC, with DNS hostnames and resolution so the functions resolve the proxy's endpoint
/// name, and its internet gateway.
fn add_vpc_and_internet_gateway(
    stack: &mut StackBuilder<'_>,
    vpc_cidr: &VpcCidr,
) -> Result<(), CfnError> {
    stack.add(
        "Vpc",
        Vpc {
            cidr_block: vpc_cidr.block().to_owned(),
            enable_dns_hostnames: true,
            enable_dns_support: true,
            tags: name_tag(stack, "vpc"),
        },
    )?;
    stack.add(
        "InternetGateway",
        InternetGateway {
            tags: name_tag(stack, "igw"),
        },
    )?;
    stack.add(
        "InternetGatewayAttachment",
        VpcGatewayAttachment {
            vpc_id: Expr::reference("Vpc"),
            internet_gateway_id: Expr::reference("InternetGateway"),
        },
    )
}

/// Two public and two private subnets, one of each per availability zone.
fn add_subnets(stack: &mut StackBuilder<'_>, vpc_cidr: &VpcCidr) -> Result<(), CfnError> {
    // Four equal subnets: each gets a quarter of the VPC's addresses.
    let subnet_host_bits = 32 - vpc_cidr.prefix() - 2;
    let subnet_cidr = |index: u32| {
        Expr::Select(
            index,
            Box::new(Expr::Cidr(
                Box::new(Expr::get_att("Vpc", "CidrBlock")),
                4,
                subnet_host_bits,
            )),
        )
    };
    let zone = |index: u32| Expr::Select(index, Box::new(Expr::GetAzs(String::new())));
    let subnets = [
        ("PublicSubnetA", 0, 0),
        ("PublicSubnetB", 1, 1),
        ("PrivateSubnetA", 2, 0),
        ("PrivateSubnetB", 3, 1),
    ];
    for (id, cidr_index, zone_index) in subnets {
        stack.add(
            id,
            Subnet {
                vpc_id: Expr::reference("Vpc"),
                cidr_block: subnet_cidr(cidr_index),
                availability_zone: zone(zone_index),
                tags: name_tag(stack, &id.to_lowercase()),
            },
        )?;
    }
    Ok(())
}

/// The public subnets' route table, its default route going to the internet gateway.
fn add_public_route_table(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    stack.add(
        "PublicRouteTable",
        RouteTable {
            vpc_id: Expr::reference("Vpc"),
            tags: name_tag(stack, "public"),
        },
    )?;
    stack.add(
        "PublicDefaultRoute",
        Resource::new(Route {
            route_table_id: Expr::reference("PublicRouteTable"),
            destination_cidr_block: "0.0.0.0/0".to_owned(),
            gateway_id: Some(Expr::reference("InternetGateway")),
            nat_gateway_id: None,
        })
        .depends_on(["InternetGatewayAttachment"]),
    )
}

/// A NAT gateway in a public subnet with its Elastic IP, through which the functions in the
/// private subnets reach AWS APIs and the SaaS.
fn add_nat_gateway(stack: &mut StackBuilder<'_>, zone: &ZoneEgress) -> Result<(), CfnError> {
    // Zone A keeps the single gateway's name tag, so the console names do not change either.
    let name = if zone.zone == "a" {
        "nat".to_owned()
    } else {
        format!("nat-{}", zone.zone)
    };
    stack.add(
        zone.elastic_ip,
        Resource::new(Eip {
            domain: "vpc".to_owned(),
            tags: name_tag(stack, &name),
        })
        .depends_on(["InternetGatewayAttachment"]),
    )?;
    stack.add(
        zone.nat_gateway,
        NatGateway {
            allocation_id: Expr::get_att(zone.elastic_ip, "AllocationId"),
            subnet_id: Expr::reference(zone.public_subnet),
            tags: name_tag(stack, &name),
        },
    )
}

/// A private route table, its default route going to its zone's NAT gateway.
fn add_private_route_table(
    stack: &mut StackBuilder<'_>,
    zone: &ZoneEgress,
) -> Result<(), CfnError> {
    let name = if zone.zone == "a" {
        "private".to_owned()
    } else {
        format!("private-{}", zone.zone)
    };
    stack.add(
        zone.route_table,
        RouteTable {
            vpc_id: Expr::reference("Vpc"),
            tags: name_tag(stack, &name),
        },
    )?;
    stack.add(
        zone.default_route,
        Route {
            route_table_id: Expr::reference(zone.route_table),
            destination_cidr_block: "0.0.0.0/0".to_owned(),
            gateway_id: None,
            nat_gateway_id: Some(Expr::reference(zone.nat_gateway)),
        },
    )
}

/// Each subnet bound to its route table; private subnet B's is its own zone's with a NAT gateway
/// per zone, the shared one otherwise.
fn add_route_table_associations(
    stack: &mut StackBuilder<'_>,
    private_b_table: &str,
) -> Result<(), CfnError> {
    for (subnet, table) in [
        ("PublicSubnetA", "PublicRouteTable"),
        ("PublicSubnetB", "PublicRouteTable"),
        ("PrivateSubnetA", ZONE_A_EGRESS.route_table),
        ("PrivateSubnetB", private_b_table),
    ] {
        stack.add(
            &format!("{subnet}RouteTableAssociation"),
            SubnetRouteTableAssociation {
                subnet_id: Expr::reference(subnet),
                route_table_id: Expr::reference(table),
            },
        )?;
    }
    Ok(())
}

/// The capacity and connections alarms of the cluster.
fn add_database_alarms(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    add_capacity_alarm(stack)?;
    add_connections_alarm(stack)
}

/// What to look at when the database runs short of capacity or connections.
fn database_look_at() -> Vec<String> {
    vec![
        "The cluster's `ACUUtilization`, `ServerlessDatabaseCapacity` and `DatabaseConnections` metrics, and the proxy's `ClientConnections` and `DatabaseConnectionsCurrentlyBorrowed`.".to_owned(),
        "Performance Insights of the writer instance for the queries holding capacity or connections (the proxy endpoint is reachable only from inside the VPC).".to_owned(),
        "Sagas piling up in RUNNING, which the query below lists.".to_owned(),
    ]
}

/// A metric of the cluster, as `statistic` over the period.
fn cluster_metric(name: &'static str, statistic: Statistic) -> Watched {
    Watched::Metric {
        namespace: "AWS/RDS".to_owned(),
        name,
        dimensions: vec![dimension("DBClusterIdentifier", Expr::reference(CLUSTER))],
        statistic,
    }
}

/// The alarm on the cluster nearing its maximum capacity.
fn add_capacity_alarm(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    let env = stack.env;
    add_sustained_alarm(
        stack,
        AlarmSpec {
            logical_id: "DatabaseCapacityAlarm".to_owned(),
            anchor: "database-capacity".to_owned(),
            title: "database capacity".to_owned(),
            meaning: format!(
                "The Aurora cluster uses more than {} % of its maximum capacity ({} ACUs); beyond it, queries queue and sagas slow down.",
                env.alarms.aurora_capacity_percent, env.aurora.max_capacity
            ),
            watched: cluster_metric("ACUUtilization", Statistic::Average),
            threshold: f64::from(env.alarms.aurora_capacity_percent),
            comparison: ComparisonOperator::GreaterThanThreshold,
            look_at: database_look_at(),
            commands: vec![
                stack.stuck_sagas_command("RUNNING"),
                stack.saga_show_command(),
            ],
        },
    )
}

/// The alarm on the cluster holding more connections than the proxy should let through.
fn add_connections_alarm(stack: &mut StackBuilder<'_>) -> Result<(), CfnError> {
    let env = stack.env;
    add_sustained_alarm(
        stack,
        AlarmSpec {
            logical_id: "DatabaseConnectionsAlarm".to_owned(),
            anchor: "database-connections".to_owned(),
            title: "database connections".to_owned(),
            meaning: format!(
                "The Aurora cluster holds more than {} connections; the proxy should keep this low, so functions may be bypassing it or holding transactions open.",
                env.alarms.aurora_connections
            ),
            watched: cluster_metric("DatabaseConnections", Statistic::Maximum),
            threshold: f64::from(env.alarms.aurora_connections),
            comparison: ComparisonOperator::GreaterThanThreshold,
            look_at: database_look_at(),
            commands: vec![stack.stuck_sagas_command("RUNNING")],
        },
    )
}

#[cfg(test)]
mod tests {
    use super::{MIGRATIONS, migrations_hash, url_port};

    #[test]
    fn the_migrations_hash_changes_with_any_migration_and_only_then() {
        let shipped = migrations_hash(MIGRATIONS);
        assert_eq!(shipped.len(), 16);
        // FNV-1a 64 of nothing is its offset basis.
        assert_eq!(migrations_hash(&[]), "cbf29ce484222325");
        let mut edited = MIGRATIONS.to_vec();
        edited[0].sql = "CREATE TABLE sagas ();";
        assert_ne!(migrations_hash(&edited), shipped, "an edited migration");
        assert_ne!(
            migrations_hash(&MIGRATIONS[..MIGRATIONS.len() - 1]),
            shipped,
            "a migration more"
        );
        edited[0].sql = MIGRATIONS[0].sql;
        assert_eq!(
            migrations_hash(&edited),
            shipped,
            "the same migrations again"
        );
    }

    #[test]
    fn url_port_is_explicit_or_the_schemes_default() {
        assert_eq!(url_port("https://payments.example.com/v1"), Some(443));
        assert_eq!(url_port("https://payments.example.com:8443/v1"), Some(8443));
        assert_eq!(url_port("http://127.0.0.1:9320/inventory"), Some(9320));
        assert_eq!(url_port("http://inventory.internal"), Some(80));
        assert_eq!(url_port("https://[2001:db8::1]/v1"), Some(443));
        assert_eq!(url_port("https://[2001:db8::1]:9443/v1"), Some(9443));
        assert_eq!(url_port("ftp://example.com/"), None);
    }
}
