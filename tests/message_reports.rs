//! Delivery reports and sends left in doubt, on SQLite and PostgreSQL: a
//! report that overtakes the record of its send is kept and applied by that
//! record; after a crash (a lease run out, no provider id recorded) a send
//! takes a kept report from its recipient and is not sent again; one
//! without waits, then goes back to the queue.

mod common;

use common::{Db, TestDb};
use herald::store::messages::{NewMessage, ReportRecord, SendRecord};
use herald::store::{new_id, Store};

const LEASE: i64 = 1_000;
const WAIT: i64 = 10_000;

fn sms(to: &str) -> NewMessage {
    NewMessage {
        id: new_id(),
        channel: "sms".into(),
        recipient: to.into(),
        request: "{}".into(),
        rendered: "{}".into(),
        template_id: None,
        template_version: None,
        idempotency_key: None,
        request_hash: "h".into(),
        rfc_message_id: None,
        max_retries: 3,
        due_at: 0,
        priority: 1,
    }
}

fn receipt(provider_id: &str, address: &str) -> ReportRecord {
    ReportRecord {
        channel: "sms".into(),
        message_id: None,
        provider_id: Some(provider_id.into()),
        status: "delivered",
        code: Some("DELIVRD".into()),
        text: Some("stat:DELIVRD".into()),
        suppress: false,
        address: Some(address.into()),
    }
}

fn sent(id: &str, provider_id: &str) -> SendRecord {
    SendRecord {
        id: id.into(),
        attempt: 1,
        status: "sent",
        result: "accepted",
        reason: None,
        code: Some("0x00000000".into()),
        text: None,
        provider_id: Some(provider_id.into()),
        provider: None,
        due_at: None,
        suppress: Vec::new(),
    }
}

async fn status(store: &Store, id: &str) -> String {
    store.get_message(id).await.unwrap().status
}

async fn reports_and_doubt(db: Db) {
    let Some(tdb) = TestDb::new(db).await else {
        return;
    };
    let store = Store::open(&tdb.url, 4).await.unwrap();
    let t0 = 1_000_000;
    let overtaken = sms("+15550001001");
    let settled = sms("+15550001002");
    let lost = sms("+15550001003");
    let acked = sms("+15550001004");
    for m in [&overtaken, &settled, &lost, &acked] {
        store.accept_message(m, t0).await.unwrap();
    }
    let claimed = store
        .claim_messages("sms", "node-a", t0, LEASE, 10, None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);

    // A receipt that overtakes the record of its send is kept (once, however
    // often the peer sends it), then applied by the record.
    store
        .apply_reports(&[receipt("100", "15550001001")], t0 + 10)
        .await
        .unwrap();
    store
        .apply_reports(&[receipt("100", "15550001001")], t0 + 11)
        .await
        .unwrap();
    assert_eq!(store.kept_reports("sms").await.unwrap(), 1);
    assert_eq!(status(&store, &overtaken.id).await, "sending");
    store
        .record_sends(
            &[sent(&overtaken.id, "100"), sent(&acked.id, "103")],
            t0 + 20,
        )
        .await
        .unwrap();
    assert_eq!(status(&store, &overtaken.id).await, "delivered");
    assert_eq!(status(&store, &acked.id).await, "sent");
    assert_eq!(store.kept_reports("sms").await.unwrap(), 0);

    // The node dies with `settled` and `lost` in flight, their
    // acknowledgements unrecorded. The SMSC took `settled`: its receipt
    // comes (from the recipient's number, under an id herald never saw).
    store
        .apply_reports(&[receipt("101", "15550001002")], t0 + 500)
        .await
        .unwrap();
    // Before the lease runs out nothing is recovered.
    assert_eq!(
        store.recover_messages("sms", t0 + 500, WAIT).await.unwrap(),
        0
    );
    // After it: `settled` is sent and delivered, not sent again; `lost` waits.
    let after_lease = t0 + LEASE + 1;
    assert_eq!(
        store
            .recover_messages("sms", after_lease, WAIT)
            .await
            .unwrap(),
        1
    );
    assert_eq!(status(&store, &settled.id).await, "delivered");
    let row = store.get_message(&settled.id).await.unwrap();
    assert_eq!(row.provider_id.as_deref(), Some("101"));
    let attempts = store.message_attempts(&settled.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].result.as_deref(), Some("accepted"));
    assert_eq!(status(&store, &lost.id).await, "sending");
    assert_eq!(store.kept_reports("sms").await.unwrap(), 0);
    // The same receipt again (the SMSC never got its answer) changes nothing.
    store
        .apply_reports(&[receipt("101", "15550001002")], after_lease + 1)
        .await
        .unwrap();
    assert_eq!(status(&store, &settled.id).await, "delivered");
    assert_eq!(store.kept_reports("sms").await.unwrap(), 0);

    // No receipt for `lost` by the end of the wait: it is queued again.
    assert_eq!(
        store
            .recover_messages("sms", t0 + WAIT - 1, WAIT)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .recover_messages("sms", t0 + WAIT + 1, WAIT)
            .await
            .unwrap(),
        1
    );
    let row = store.get_message(&lost.id).await.unwrap();
    assert_eq!(row.status, "queued");
    let attempts = store.message_attempts(&lost.id).await.unwrap();
    assert_eq!(attempts[0].result.as_deref(), Some("interrupted"));

    // Without doubt-settling (in_doubt 0) an interrupted send is queued at
    // once, even with a receipt from its recipient kept.
    let other = sms("+15550001005");
    store.accept_message(&other, t0 + WAIT + 2).await.unwrap();
    let claimed = store
        .claim_messages("sms", "node-b", t0 + WAIT + 2, LEASE, 10, None)
        .await
        .unwrap();
    assert_eq!(claimed.iter().filter(|m| m.id == other.id).count(), 1);
    store
        .apply_reports(&[receipt("104", "15550001005")], t0 + WAIT + 3)
        .await
        .unwrap();
    let later = t0 + WAIT + LEASE + 10;
    assert!(store.recover_messages("sms", later, 0).await.unwrap() >= 1);
    assert_eq!(status(&store, &other.id).await, "queued");

    // A report kept by another node while this one recorded the send (so
    // the record did not see it) is applied by the next recovery pass.
    let raced = sms("+15550001006");
    store.accept_message(&raced, later).await.unwrap();
    let claimed = store
        .claim_messages("sms", "node-c", later, LEASE, 10, None)
        .await
        .unwrap();
    assert!(claimed.iter().any(|m| m.id == raced.id));
    let mut rec = sent(&raced.id, "105");
    rec.attempt = claimed.iter().find(|m| m.id == raced.id).unwrap().tries;
    store.record_sends(&[rec], later + 1).await.unwrap();
    let insert = "INSERT INTO message_reports (channel, provider_id, address, status, suppress, received_at) \
                  VALUES ('sms', '105', '15550001006', 'delivered', 0, 1)";
    match &store.pool {
        herald::store::Pool::Sqlite(p) => drop(sqlx::query(insert).execute(p).await.unwrap()),
        herald::store::Pool::Postgres(p) => drop(sqlx::query(insert).execute(p).await.unwrap()),
    }
    assert_eq!(status(&store, &raced.id).await, "sent");
    store.recover_messages("sms", later + 2, 0).await.unwrap();
    assert_eq!(status(&store, &raced.id).await, "delivered");

    // Unmatched reports are dropped once past keeping.
    assert_eq!(store.kept_reports("sms").await.unwrap(), 1);
    store
        .recover_messages("sms", later + 10 * 3_600_000, 0)
        .await
        .unwrap();
    assert_eq!(store.kept_reports("sms").await.unwrap(), 0);
    store.close().await;
    tdb.cleanup().await;
}

on_both_backends!(in_doubt, reports_and_doubt);

/// While a bulk is being accepted, a claim takes only messages ranked above
/// the bulk's (`message::holds`): an emergency, not the marketing rows.
async fn claims_below_a_held_rank(db: Db) {
    let Some(tdb) = TestDb::new(db).await else {
        return;
    };
    let store = Store::open(&tdb.url, 4).await.unwrap();
    let t0 = 1_000_000;
    let mut marketing = sms("+15550002001");
    marketing.priority = 2;
    let mut code = sms("+15550002002");
    code.priority = 0;
    for m in [&marketing, &code] {
        store.accept_message(m, t0).await.unwrap();
    }
    let held = store
        .claim_messages("sms", "node-a", t0, LEASE, 10, Some(2))
        .await
        .unwrap();
    let ids: Vec<&str> = held.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec![code.id.as_str()]);
    let released = store
        .claim_messages("sms", "node-a", t0, LEASE, 10, None)
        .await
        .unwrap();
    let ids: Vec<&str> = released.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, vec![marketing.id.as_str()]);
    store.close().await;
    tdb.cleanup().await;
}

on_both_backends!(held_ranks, claims_below_a_held_rank);
