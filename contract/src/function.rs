//! The Lambda functions of a stack, by role: the key of their settings in env config, their
//! crate and binary name, their physical name and their template ids.

/// What a function does in its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FunctionRole {
    /// HTTP API handler (every pattern; in `orchestrator` it also runs the saga).
    Api,
    /// SQS worker (pattern `sqs`).
    Worker,
    /// Step Functions task handler (pattern `stepfunctions`).
    Step,
    /// The database migration step behind `Custom::DatabaseMigrations` (a pattern whose store
    /// is Aurora, outside `local`).
    Migrate,
}

impl FunctionRole {
    /// Every role.
    pub const ALL: [FunctionRole; 4] = [
        FunctionRole::Api,
        FunctionRole::Worker,
        FunctionRole::Step,
        FunctionRole::Migrate,
    ];

    /// The role's name: the key in env config, the binary's name and the suffix of the
    /// function's physical name.
    pub fn name(self) -> &'static str {
        match self {
            FunctionRole::Api => "api",
            FunctionRole::Worker => "worker",
            FunctionRole::Step => "step",
            FunctionRole::Migrate => "migrate",
        }
    }

    /// The role named `name`, `None` for another name.
    pub fn from_name(name: &str) -> Option<FunctionRole> {
        FunctionRole::ALL
            .into_iter()
            .find(|role| role.name() == name)
    }

    /// The function's physical name in the stack `stack_name`: `<stack>-api`. The template
    /// writes it as `${AWS::StackName}-api` (see [`FunctionRole::physical_name_sub`]).
    pub fn physical_name(self, stack_name: &str) -> String {
        format!("{stack_name}-{}", self.name())
    }

    /// The function's physical name as a `!Sub` string of the template.
    pub fn physical_name_sub(self) -> String {
        self.physical_name("${AWS::StackName}")
    }

    /// The function's logical id in the template (`ApiFunction`).
    pub fn logical_id(self) -> String {
        format!("{}Function", crate::template::pascal_case(self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::FunctionRole;

    #[test]
    fn every_role_is_found_by_its_name() {
        for role in FunctionRole::ALL {
            assert_eq!(FunctionRole::from_name(role.name()), Some(role));
        }
        assert_eq!(FunctionRole::from_name("orchestrator"), None);
    }

    #[test]
    fn physical_names_are_the_stack_name_and_the_role() {
        assert_eq!(
            FunctionRole::Api.physical_name("sagaform-orchestrator-prod"),
            "sagaform-orchestrator-prod-api"
        );
        assert_eq!(
            FunctionRole::Worker.physical_name_sub(),
            "${AWS::StackName}-worker"
        );
        assert_eq!(FunctionRole::Step.logical_id(), "StepFunction");
    }
}
