//! What the client writes to the logs: every line of a call carries the transaction id and the
//! idempotency key, and no line carries the request body.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::fake_and_client;
use sagaform_fake_saas::{Fault, FaultRule};
use sagaform_saas_client::StepCall;
use sagaform_saga::PURCHASE;
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Installs, once per test binary, a global subscriber that wants every line of the client and
/// drops it. tracing caches per call site whether any subscriber wants it: the other tests of
/// this binary call the client on threads without a subscriber, and could leave a call site
/// cached as unwanted while this test captures.
fn keep_callsites_enabled() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let discard = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("sagaform_saas_client=trace"))
            .with_writer(std::io::sink)
            .finish();
        let _ = tracing::subscriber::set_global_default(discard);
    });
}

// The subscriber is set for this thread only, so the runtime must run on this thread.
#[tokio::test(flavor = "current_thread")]
async fn log_lines_carry_the_transaction_id_and_never_the_request_body() {
    keep_callsites_enabled();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::new("sagaform_saas_client=trace"))
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (fake, client) = fake_and_client().await;
    fake.faults()
        .add(FaultRule::new("payments", "charge", Fault::Unavailable).times(1))
        .unwrap();
    let step = PURCHASE.step("payment").unwrap();
    let request = json!({"card_number": "4111111111111111", "player_id": "p-secret"});
    let call = StepCall::action(step, "tx-logged", &request);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    client
        .call_with_retry(&call, &step.retry, deadline)
        .await
        .unwrap();

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // A failure, a retry decision and a success at least.
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        let span = &line["span"];
        assert_eq!(span["transaction_id"], "tx-logged", "{line}");
        assert_eq!(
            span["idempotency_key"], "tx-logged:payment:charge",
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["path"] == "/payments/charge" && l["fields"]["status"] == 200)
    );
    assert!(
        !text.contains("4111111111111111") && !text.contains("p-secret"),
        "{text}"
    );
}
