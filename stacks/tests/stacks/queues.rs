//! The work queue of pattern `sqs`: its DLQ, the worker's event source mapping, FIFO.

use crate::common;

use sagaform_saga::PURCHASE;
use sagaform_stacks::Pattern;
use sagaform_stacks::cfn::{Expr, Properties};
use sagaform_stacks::fixtures::example_env;

use common::template;

#[test]
fn sqs_has_work_queue_dlq_and_a_partial_batch_mapping() {
    let env = example_env("staging");
    let template = template(Pattern::Sqs, &env);
    let Properties::Queue(dlq) = &template.resources["DeadLetterQueue"].properties else {
        panic!()
    };
    assert_eq!(dlq.message_retention_period, 1_209_600);
    assert_eq!(dlq.sqs_managed_sse_enabled, Some(true));
    let allow = dlq.redrive_allow_policy.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(allow.redrive_permission).unwrap(),
        "byQueue"
    );
    assert_eq!(
        allow.source_queue_arns,
        [Expr::sub(
            "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${AWS::StackName}-work"
        )]
    );
    let Properties::Queue(work) = &template.resources["WorkQueue"].properties else {
        panic!()
    };
    assert_eq!(work.queue_name, Some(Expr::sub("${AWS::StackName}-work")));
    let redrive = work.redrive_policy.as_ref().unwrap();
    assert!(
        redrive
            .dead_letter_target_arn
            .is_get_att_of("DeadLetterQueue", "Arn")
    );
    // Each step's retries are redeliveries the worker counts on the step: the queue lets
    // all of them through, then `max_receive_count` more before a message is poison.
    assert_eq!(
        redrive.max_receive_count,
        PURCHASE.max_receive_count(env.queue.max_receive_count)
    );
    assert_eq!(
        redrive.max_receive_count,
        env.queue.max_receive_count + 24,
        "three steps of three action and five compensation retries"
    );
    let Properties::EventSourceMapping(mapping) =
        &template.resources["WorkerEventSourceMapping"].properties
    else {
        panic!()
    };
    assert_eq!(
        serde_json::to_value(&mapping.function_response_types).unwrap(),
        serde_json::json!(["ReportBatchItemFailures"])
    );
    assert_eq!(mapping.batch_size, env.queue.batch_size);
    assert_eq!(mapping.maximum_batching_window_in_seconds, Some(5));
    assert_eq!(
        mapping.scaling_config.maximum_concurrency,
        env.queue.maximum_concurrency
    );
    for output in ["WorkQueueUrl", "DeadLetterQueueUrl"] {
        assert!(
            matches!(template.outputs[output].value, Expr::Ref(_)),
            "{output} must use !Ref, not GetAtt QueueUrl"
        );
    }
}

#[test]
fn fifo_queues_get_fifo_names_and_no_batching_window() {
    let env = example_env("prod");
    assert!(env.queue.fifo);
    let template = template(Pattern::Sqs, &env);
    let Properties::Queue(work) = &template.resources["WorkQueue"].properties else {
        panic!()
    };
    assert!(work.fifo_queue);
    assert_eq!(
        work.queue_name,
        Some(Expr::sub("${AWS::StackName}-work.fifo"))
    );
    let Properties::Queue(dlq) = &template.resources["DeadLetterQueue"].properties else {
        panic!()
    };
    assert!(dlq.fifo_queue);
    let Properties::EventSourceMapping(mapping) =
        &template.resources["WorkerEventSourceMapping"].properties
    else {
        panic!()
    };
    assert_eq!(mapping.maximum_batching_window_in_seconds, None);
}
