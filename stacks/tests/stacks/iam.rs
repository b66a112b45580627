//! IAM: every statement names this stack's resources (or `*` where AWS allows nothing else), and
//! the api function's role grants what its pattern needs and no more.

use crate::common;

use sagaform_stacks::Pattern;
use sagaform_stacks::cfn::{Expr, Properties};
use sagaform_stacks::fixtures::example_env;

use common::{action_names, all_examples, statements, statements_for, template};

/// Actions AWS authorizes only on `*`: they act on no resource of the stack.
const STAR_ONLY_ACTIONS: [&str; 10] = [
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
];

#[test]
fn iam_statements_name_this_stacks_resources_except_where_aws_allows_only_star() {
    for (pattern, env) in all_examples() {
        let template = template(pattern, &env);
        for (role_id, resource) in &template.resources {
            if !matches!(resource.properties, Properties::Role(_)) {
                continue;
            }
            for statement in statements(&template, role_id) {
                let sid = statement.sid.as_deref().unwrap_or_default();
                let at = format!("{pattern} {} {role_id} {sid}", env.name);
                assert!(!statement.resource.is_empty(), "{at}: no resource");
                for target in &statement.resource {
                    match target {
                        Expr::Str(star) if star == "*" => {
                            for action in action_names(statement) {
                                assert!(
                                    STAR_ONLY_ACTIONS.contains(&action.as_str()),
                                    "{at}: {action} on *"
                                );
                            }
                        }
                        Expr::Ref(_) | Expr::GetAtt { .. } => {
                            let (id, _) = target.target().unwrap();
                            assert!(template.resources.contains_key(id), "{at}: {id}");
                        }
                        Expr::Sub(text) => {
                            let own_resource = text
                                .strip_prefix("${")
                                .and_then(|rest| rest.split_once('.'))
                                .is_some_and(|(id, _)| template.resources.contains_key(id));
                            let own_name = text.contains(":${AWS::AccountId}:")
                                && text.contains("${AWS::StackName}-");
                            // Lambda creates network interfaces before their ids exist: the
                            // account and region are as narrow as its documentation allows.
                            let network_interfaces = text
                                == "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:*/*"
                                && action_names(statement)
                                    .iter()
                                    .all(|a| a.starts_with("ec2:"));
                            // RDS writes enhanced monitoring to a log group whose name AWS
                            // fixes in every account.
                            let enhanced_monitoring = role_id == "DatabaseMonitoringRole"
                                && text.starts_with(
                                    "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:RDSOSMetrics",
                                );
                            assert!(
                                own_resource
                                    || own_name
                                    || network_interfaces
                                    || enhanced_monitoring,
                                "{at}: {text}"
                            );
                        }
                        other => panic!("{at}: unexpected resource {other:?}"),
                    }
                }
            }
        }
    }
}

#[test]
fn api_role_grants_exactly_what_its_pattern_needs() {
    let staging = example_env("staging");

    let sqs = template(Pattern::Sqs, &staging);
    let send = statements_for(&sqs, "ApiFunctionRole", "sqs");
    assert_eq!(send.len(), 1);
    assert_eq!(action_names(send[0]), ["sqs:SendMessage"]);
    assert_eq!(send[0].resource, [Expr::get_att("WorkQueue", "Arn")]);
    assert!(statements_for(&sqs, "ApiFunctionRole", "states").is_empty());
    assert!(statements_for(&sqs, "ApiFunctionRole", "lambda").is_empty());

    let steps = template(Pattern::StepFunctions, &staging);
    let start = statements_for(&steps, "ApiFunctionRole", "states");
    assert_eq!(start.len(), 1);
    assert_eq!(action_names(start[0]), ["states:StartExecution"]);
    assert_eq!(start[0].resource, [Expr::reference("StateMachine")]);
    assert!(statements_for(&steps, "ApiFunctionRole", "sqs").is_empty());
    let step_role = statements(&steps, "StepFunctionRole");
    assert!(
        step_role.iter().all(|s| s
            .action
            .iter()
            .all(|a| ["logs", "dynamodb"].contains(&&*a.service))),
        "the step function only logs and reads and writes the tables"
    );

    for (pattern, template) in [(Pattern::Sqs, &sqs), (Pattern::StepFunctions, &steps)] {
        for role in ["ApiFunctionRole", "WorkerFunctionRole", "StepFunctionRole"] {
            if !template.resources.contains_key(role) {
                continue;
            }
            for statement in statements_for(template, role, "dynamodb") {
                for target in &statement.resource {
                    assert!(
                        target.is_get_att_of("SagaTable", "Arn")
                            || target.is_get_att_of("IdempotencyTable", "Arn")
                            || *target == Expr::sub("${SagaTable.Arn}/index/open-by-status"),
                        "{pattern} {role}: {target:?}"
                    );
                }
            }
        }
    }
}
