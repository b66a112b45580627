//! The three ways of running a saga, by the names the command line, the file names, the stack
//! names and the functions' `SAGAFORM_PATTERN` use.

use std::fmt;
use std::str::FromStr;

/// A deployment pattern of the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pattern {
    /// A: one Lambda runs the steps in order; state in DynamoDB or Aurora.
    Orchestrator,
    /// B: the API accepts and enqueues; a worker Lambda runs the steps from SQS.
    Sqs,
    /// C: the API starts a Step Functions Standard execution generated from the saga.
    StepFunctions,
}

impl Pattern {
    /// Every pattern, in the order they are documented and synthesized.
    pub const ALL: [Pattern; 3] = [Pattern::Orchestrator, Pattern::Sqs, Pattern::StepFunctions];

    /// The name used on the command line, in file names, in stack names and in
    /// `SAGAFORM_PATTERN`.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::Orchestrator => "orchestrator",
            Pattern::Sqs => "sqs",
            Pattern::StepFunctions => "stepfunctions",
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a pattern name that is not one of [`Pattern::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pattern `{given}`: expected one of {}", Pattern::ALL.map(Pattern::name).join(", "))]
pub struct UnknownPattern {
    /// What was given.
    pub given: String,
}

impl FromStr for Pattern {
    type Err = UnknownPattern;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPattern {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn every_name_parses_back_to_its_pattern() {
        for pattern in Pattern::ALL {
            assert_eq!(pattern.name().parse::<Pattern>(), Ok(pattern));
            assert_eq!(pattern.to_string(), pattern.name());
        }
    }

    #[test]
    fn unknown_pattern_lists_the_valid_ones() {
        let error = "step-functions".parse::<Pattern>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown pattern `step-functions`: expected one of orchestrator, sqs, stepfunctions"
        );
    }
}
