//! The state machine of pattern `stepfunctions`: its type, definition, logging and role.

use crate::common;

use sagaform_stacks::Pattern;
use sagaform_stacks::cfn::{Expr, Properties};
use sagaform_stacks::fixtures::example_env;

use common::template;

#[test]
fn state_machine_is_standard_and_generated_from_the_saga() {
    let template = template(Pattern::StepFunctions, &example_env("staging"));
    let Properties::StateMachine(machine) = &template.resources["StateMachine"].properties else {
        panic!()
    };
    assert_eq!(
        serde_json::to_value(machine.state_machine_type).unwrap(),
        "STANDARD"
    );
    let Expr::SubWith(definition, variables) = &machine.definition_string else {
        panic!("definition is not a !Sub with variables")
    };
    assert!(variables["StepFunctionArn"].is_get_att_of("StepFunction", "Arn"));
    let json: serde_json::Value = serde_json::from_str(definition).unwrap();
    assert_eq!(json["StartAt"], "Execute stock");
    assert!(!machine.logging_configuration.include_execution_data);
    assert!(
        machine.logging_configuration.destinations[0]
            .cloud_watch_logs_log_group
            .log_group_arn
            .is_get_att_of("StateMachineLogGroup", "Arn")
    );
}

#[test]
fn state_machine_role_invokes_only_the_step_function() {
    let template = template(Pattern::StepFunctions, &example_env("staging"));
    let Properties::Role(role) = &template.resources["StateMachineRole"].properties else {
        panic!()
    };
    let statements = &role.policies[0].policy_document.statement;
    let invoke: Vec<_> = statements
        .iter()
        .filter(|s| s.action.iter().any(|a| a.service == "lambda"))
        .collect();
    assert_eq!(invoke.len(), 1);
    assert_eq!(invoke[0].action.len(), 1);
    assert!(invoke[0].resource.iter().all(
        |r| r.is_get_att_of("StepFunction", "Arn") || *r == Expr::sub("${StepFunction.Arn}:*")
    ));
}

#[test]
fn another_saga_definition_gets_its_own_states() {
    let shipping = sagaform_saga::Step {
        name: "shipping",
        ..sagaform_saga::PURCHASE.steps[0]
    };
    let saga = sagaform_saga::Saga {
        name: "delivery",
        steps: Box::leak(Box::new([shipping])),
    };
    let synthesized =
        sagaform_stacks::synthesize_saga(Pattern::StepFunctions, &example_env("staging"), &saga)
            .unwrap();
    let Properties::StateMachine(machine) =
        &synthesized.template.resources["StateMachine"].properties
    else {
        panic!()
    };
    let Expr::SubWith(definition, _) = &machine.definition_string else {
        panic!("definition is not a !Sub with variables")
    };
    let json: serde_json::Value = serde_json::from_str(definition).unwrap();
    assert_eq!(json["StartAt"], "Execute shipping");
    assert!(json["States"].get("Execute stock").is_none(), "{json:#}");
}
