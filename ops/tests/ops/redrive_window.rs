//! `dlq redrive` and the providers' idempotency window, on moto: sagas on the DLQ older than the
//! window are listed and need an operator's yes before anything is resent; without a terminal
//! the redrive is refused naming `--yes`, and nothing moves; fresh sagas pass without a question.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::MessageAttributeValue;
use sagaform_deploy::Refusal;
use sagaform_deploy::confirm::{AssumeYes, NoTerminal};
use sagaform_ops::dlq::{WindowGuard, smallest_window};
use sagaform_ops::{OpsError, OpsRefusal};
use sagaform_stacks::fixtures::example_env_with;
use sagaform_testkit::{QueuePair, sqs_client};
use serde_json::json;
use uuid::{NoContext, Timestamp, Uuid};

use crate::dlq::sqs_dlq;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A UUIDv7 transaction id created `ago` before now.
fn transaction_created(ago: Duration) -> String {
    let created = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - ago;
    Uuid::new_v7(Timestamp::from_unix(NoContext, created.as_secs(), 0)).to_string()
}

async fn dead_letter(pair: &QueuePair, transaction_id: &str) {
    sqs_client()
        .send_message()
        .queue_url(&pair.dlq_url)
        .message_body(json!({ "transaction_id": transaction_id }).to_string())
        .message_attributes(
            "transaction_id",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(transaction_id)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn redrive_of_sagas_older_than_the_idempotency_window_asks_first_and_lists_them() {
    let pair = QueuePair::create(3).await;
    let old = transaction_created(Duration::from_secs(30 * 3600));
    let fresh = transaction_created(Duration::from_secs(60));
    dead_letter(&pair, &old).await;
    dead_letter(&pair, &fresh).await;
    let dlq = sqs_dlq(&pair);
    let lines = Mutex::new(Vec::<String>::new());
    let progress = |line: &str| lines.lock().unwrap().push(line.to_owned());

    // No terminal and no --yes: refused, the warning names the old saga only.
    let guard = WindowGuard {
        env_name: "staging",
        window: DAY,
        confirm: &NoTerminal,
    };
    let error = dlq
        .confirm_idempotency_window(&guard, &progress)
        .await
        .expect_err("needs a yes");
    assert!(
        matches!(
            error,
            OpsError::Refused(OpsRefusal::Unconfirmed(Refusal::NeedsConfirmation { .. }))
        ),
        "{error}"
    );
    assert!(error.to_string().contains("--yes"), "{error}");
    let text = lines.lock().unwrap().join("\n");
    assert!(
        text.contains("1 saga(s) on queue") && text.contains("idempotency window (24 h)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("- {old}")) && text.contains("30 h old"),
        "{text}"
    );
    assert!(!text.contains(&fresh), "{text}");

    // --yes: approved, the stale saga reported.
    let approved = WindowGuard {
        confirm: &AssumeYes,
        ..guard
    };
    let stale = dlq
        .confirm_idempotency_window(&approved, &progress)
        .await
        .unwrap();
    assert_eq!(
        stale
            .iter()
            .map(|s| s.transaction_id.clone())
            .collect::<Vec<_>>(),
        [Some(old)]
    );

    // A window longer than every saga's age asks nothing, even without a terminal.
    let long = WindowGuard {
        env_name: "staging",
        window: 2 * DAY,
        confirm: &NoTerminal,
    };
    assert_eq!(
        dlq.confirm_idempotency_window(&long, &progress)
            .await
            .unwrap(),
        []
    );
}

#[test]
fn the_window_is_the_smallest_of_the_env_services() {
    let env =
        example_env_with("staging", "[saas.payments]\nidempotency_window_hours = 6\n").unwrap();
    assert_eq!(smallest_window(&env), Some(Duration::from_secs(6 * 3600)));
}
