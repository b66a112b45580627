//! A state write whose answer DynamoDB lost (the SDK retries it, and the retry meets the first
//! write) is the API's success, not a 500 that leaves an orphaned saga behind for the client's
//! retry to double.

use crate::common;

use common::send;
use sagaform_api::Api;
use sagaform_testkit::{LostResponses, TestStore, fake_saas, post_transactions, purchase};

#[tokio::test]
async fn a_purchase_whose_saga_write_answer_was_lost_completes_once() {
    for (operation, key) in [
        ("PutItem", None),
        ("TransactWriteItems", Some("lost-write")),
    ] {
        let proxy = LostResponses::start().await;
        let store = TestStore::dynamodb_through(&proxy).await;
        let (fake, client) = fake_saas().await;
        let api = Api::orchestrator(store.store().clone(), client);
        proxy.lose(operation, 1);

        let answer = send(&api, post_transactions(&purchase().to_string(), key)).await;
        assert_eq!(answer.status, 200, "{operation}: {}", answer.body);
        assert_eq!(answer.body["status"], "COMPLETED", "{operation}");
        assert_eq!(proxy.lost(), [operation]);
        let sagas = store.all_sagas().await;
        assert_eq!(sagas.len(), 1, "{operation}: one saga");
        let ledger = fake.ledger().transaction(&sagas[0].transaction_id);
        assert_eq!(ledger.service("payments").actions_applied, ["charge"]);
    }
}
