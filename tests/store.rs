//! One store story, run on SQLite and on PostgreSQL: migrations are
//! idempotent, bulk inserts classify every row, the due-targets query is an
//! index range scan, and nothing is deleted from under a live call.

mod common;

use common::{Db, TestDb};
use herald::domain::target::parse_target;
use herald::domain::TargetState;
use herald::store::documents::{AGENTS, OUTDIALS, OUTPLANS};
use herald::store::targets::Inserted;
use herald::store::{new_id, PageRequest, Store, StoreError};
use serde_json::json;

fn target(phone: &str, token: Option<&str>) -> herald::domain::target::NewTarget {
    let mut v = json!({"destinations": [{"type": "tel", "target": phone}]});
    if let Some(t) = token {
        v["client_token"] = json!(t);
    }
    parse_target(&v, new_id()).unwrap()
}

async fn exec(store: &Store, sql: &str) {
    match &store.pool {
        herald::store::Pool::Sqlite(p) => drop(sqlx::query(sql).execute(p).await.unwrap()),
        herald::store::Pool::Postgres(p) => drop(sqlx::query(sql).execute(p).await.unwrap()),
    }
}

async fn the_store_story(db: Db) {
    let Some(tdb) = TestDb::new(db).await else {
        return;
    };
    let store = Store::open(&tdb.url, 4).await.unwrap();
    // Migrating again is a no-op.
    store.migrate().await.unwrap();
    Store::open(&tdb.url, 1).await.unwrap().close().await;

    let od = store
        .insert_doc(OUTDIALS, "leads", &json!({"name": "leads"}), 1)
        .await
        .unwrap();
    // A batch with an in-batch duplicate and a repeated token.
    let batch = vec![
        target("+15550000001", Some("a")),
        target("+15550000002", None),
        target("+15550000001", None),
        target("+15550000009", Some("a")),
    ];
    let res = store.insert_targets(&od.id, &batch, 1000).await.unwrap();
    assert_eq!(res[0], Inserted::Created(batch[0].id.clone()));
    assert_eq!(res[1], Inserted::Created(batch[1].id.clone()));
    assert_eq!(
        res[2],
        Inserted::Duplicate {
            existing_id: batch[0].id.clone()
        }
    );
    assert_eq!(res[3], Inserted::Existing(batch[0].id.clone()));
    // A later batch sees the stored rows.
    let again = vec![
        target("+15550000002", None),
        target("+15550000003", Some("a")),
    ];
    let res = store.insert_targets(&od.id, &again, 2000).await.unwrap();
    assert_eq!(
        res[0],
        Inserted::Duplicate {
            existing_id: batch[1].id.clone()
        }
    );
    assert_eq!(res[1], Inserted::Existing(batch[0].id.clone()));
    // The same destination in another outdial is not a duplicate.
    let od2 = store
        .insert_doc(OUTDIALS, "other", &json!({"name": "other"}), 1)
        .await
        .unwrap();
    let res = store
        .insert_targets(&od2.id, &[target("+15550000001", Some("a"))], 3000)
        .await
        .unwrap();
    assert!(matches!(res[0], Inserted::Created(_)));

    let t = store.get_target(&batch[0].id).await.unwrap();
    assert_eq!(t.state, TargetState::Idle);
    assert_eq!(t.next_attempt_at, 1000);
    assert_eq!(t.try_count_current, 0);
    let counts = store.count_targets_by_state(&od.id).await.unwrap();
    assert_eq!(counts, vec![(TargetState::Idle, 2)]);

    // A target being dialed cannot be deleted.
    exec(
        &store,
        &format!(
            "UPDATE targets SET state = 'dialing' WHERE id = '{}'",
            batch[1].id
        ),
    )
    .await;
    match store.delete_target(&batch[1].id).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("dialing"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    store.delete_target(&batch[0].id).await.unwrap();
    assert!(matches!(
        store.get_target(&batch[0].id).await,
        Err(StoreError::NotFound)
    ));

    // Documents referenced by a campaign cannot be deleted.
    let op = store
        .insert_doc(OUTPLANS, "p", &json!({"name": "p"}), 1)
        .await
        .unwrap();
    let ag = store
        .insert_doc(AGENTS, "a", &json!({"name": "a"}), 1)
        .await
        .unwrap();
    let spec = herald::domain::specs::CampaignSpec {
        name: "c".into(),
        ..Default::default()
    };
    let c = store
        .insert_campaign(
            &herald::store::campaigns::CampaignFields {
                name: "c",
                outdial_id: &od.id,
                outplan_id: &op.id,
                agent_id: Some(&ag.id),
                spec: &spec,
            },
            5,
        )
        .await
        .unwrap();
    assert_eq!(c.status, "draft");
    assert!(matches!(
        store.delete_doc(OUTPLANS, &op.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.delete_outdial(&od.id).await,
        Err(StoreError::Conflict(_))
    ));
    exec(
        &store,
        &format!(
            "UPDATE campaigns SET status = 'running' WHERE id = '{}'",
            c.id
        ),
    )
    .await;
    assert!(matches!(
        store.delete_campaign(&c.id).await,
        Err(StoreError::Conflict(_))
    ));
    let page = store
        .list_campaigns(Some("running"), &PageRequest::parse(None, None).unwrap())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);

    assert_due_query_uses_the_index(&store, &od.id).await;
    store.close().await;
    tdb.cleanup().await;
}
on_both_backends!(story, the_store_story);

/// The scheduler's "due targets of outdial X" must be a range scan on `targets_due`.
async fn assert_due_query_uses_the_index(store: &Store, outdial_id: &str) {
    let q = format!(
        "SELECT id FROM targets WHERE outdial_id = '{outdial_id}' AND state = 'idle' \
         AND next_attempt_at <= 5000 ORDER BY next_attempt_at LIMIT 100"
    );
    let plan: String = match &store.pool {
        herald::store::Pool::Sqlite(p) => {
            let rows: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {q}"))
                    .fetch_all(p)
                    .await
                    .unwrap();
            rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
        }
        herald::store::Pool::Postgres(p) => {
            // One connection, so the setting applies to the EXPLAIN (a tiny table would otherwise seq-scan).
            let mut conn = p.acquire().await.unwrap();
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            let rows: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {q}"))
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            sqlx::query("RESET enable_seqscan")
                .execute(&mut *conn)
                .await
                .unwrap();
            rows.join("\n")
        }
    };
    assert!(
        plan.contains("targets_due"),
        "due query does not use targets_due:\n{plan}"
    );
    assert!(
        !plan.to_ascii_uppercase().contains("TEMP B-TREE"),
        "due query sorts:\n{plan}"
    );
}

async fn count(store: &Store, sql: &str) -> i64 {
    match &store.pool {
        herald::store::Pool::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        herald::store::Pool::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
    }
}

/// An outdial holding `targets` and a campaign on it: their ids.
async fn campaign_over(
    store: &Store,
    targets: &[herald::domain::target::NewTarget],
) -> (String, String) {
    let od = store
        .insert_doc(OUTDIALS, "l", &json!({"name": "l"}), 1)
        .await
        .unwrap();
    store.insert_targets(&od.id, targets, 1).await.unwrap();
    let op = store
        .insert_doc(OUTPLANS, "p", &json!({"name": "p"}), 1)
        .await
        .unwrap();
    let spec = herald::domain::specs::CampaignSpec {
        name: "c".into(),
        ..Default::default()
    };
    let c = store
        .insert_campaign(
            &herald::store::campaigns::CampaignFields {
                name: "c",
                outdial_id: &od.id,
                outplan_id: &op.id,
                agent_id: None,
                spec: &spec,
            },
            1,
        )
        .await
        .unwrap();
    (od.id, c.id)
}

/// How node `n1` claims for `campaign` on `outdial`.
fn scope_of<'a>(campaign: &'a str, outdial: &'a str) -> herald::store::claims::ClaimScope<'a> {
    herald::store::claims::ClaimScope {
        campaign_id: campaign,
        outdial_id: outdial,
        node_id: "n1",
        lease_ms: 60_000,
        trunk: "default",
        agent_id: None,
        history_since: None,
    }
}

/// `calls` and `target_events` carry no per-row foreign-key checks (they are
/// the per-attempt hot path); deleting a target, an outdial or a campaign
/// still removes the target's events and detaches its calls.
async fn deleting_keeps_calls_and_events_consistent(db: Db) {
    use herald::store::claims::ClaimAction;
    let Some(tdb) = TestDb::new(db).await else {
        return;
    };
    let store = Store::open(&tdb.url, 4).await.unwrap();
    let batch = vec![
        target("+15550000011", None),
        target("+15550000012", None),
        target("+15550000013", None),
    ];
    let (od, campaign) = campaign_over(&store, &batch).await;
    let scope = scope_of(&campaign, &od);
    let claimed = store
        .claim_due_targets(&scope, 10, 10, |_, _| ClaimAction::Dial {
            destination_index: 0,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    // Targets are deleted once their call is over: close the attempts the
    // way a recovery does (dialing -> idle).
    exec(&store, "UPDATE targets SET state = 'idle'").await;
    exec(
        &store,
        "UPDATE calls SET status = 'completed', ended_at = 20",
    )
    .await;
    let events = |t: &str| format!("SELECT COUNT(*) FROM target_events WHERE target_id = '{t}'");
    let calls_of = |t: &str| format!("SELECT COUNT(*) FROM calls WHERE target_id = '{t}'");
    let (a, b) = (&batch[0].id, &batch[1].id);
    assert_eq!(count(&store, &events(a)).await, 1);
    assert_eq!(count(&store, &calls_of(a)).await, 1);

    store.delete_target(a).await.unwrap();
    assert_eq!(
        count(&store, &events(a)).await,
        0,
        "the target's events go with it"
    );
    assert_eq!(count(&store, &calls_of(a)).await, 0, "its call is detached");
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM calls").await,
        3,
        "calls are kept"
    );
    assert_eq!(
        count(&store, &events(b)).await,
        1,
        "other targets keep theirs"
    );

    store.delete_campaign(&campaign).await.unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM calls WHERE campaign_id IS NOT NULL"
        )
        .await,
        0,
        "the campaign's calls are detached"
    );
    store.delete_outdial(&od).await.unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM target_events").await, 0);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM calls WHERE target_id IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM calls").await, 3);
    store.close().await;
    tdb.cleanup().await;
}
on_both_backends!(deleting, deleting_keeps_calls_and_events_consistent);

/// On SQLite a claim reads and decides before it takes the writer; a target
/// that changes in between (here: deleted) is not dialed, and no call or
/// event row is written for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_changed_while_a_claim_decides_is_left_alone() {
    use herald::store::claims::ClaimAction;
    let tdb = TestDb::new(Db::Sqlite)
        .await
        .expect("SQLite is always there");
    let store = Store::open(&tdb.url, 4).await.unwrap();
    let od = store
        .insert_doc(OUTDIALS, "l", &json!({"name": "l"}), 1)
        .await
        .unwrap();
    let batch = vec![target("+15550000021", None), target("+15550000022", None)];
    store.insert_targets(&od.id, &batch, 1).await.unwrap();
    let victim = batch[0].id.clone();
    let (ask, asked) = std::sync::mpsc::channel::<String>();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let deleter = {
        let store = store.clone();
        let asked = std::sync::Mutex::new(asked);
        tokio::spawn(async move {
            let id = tokio::task::block_in_place(|| asked.lock().unwrap().recv().unwrap());
            store.delete_target(&id).await.unwrap();
            done.send(()).unwrap();
        })
    };
    let scope = scope_of("c1", &od.id);
    let claimed = store
        .claim_due_targets(&scope, 10, 10, |t, _| {
            if t.id == victim {
                ask.send(t.id.clone()).unwrap();
                finished.recv().unwrap();
            }
            ClaimAction::Dial {
                destination_index: 0,
            }
        })
        .await
        .unwrap();
    deleter.await.unwrap();
    let ids: Vec<&str> = claimed.iter().map(|c| c.target.id.as_str()).collect();
    assert_eq!(ids, vec![batch[1].id.as_str()]);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM calls").await, 1);
    assert_eq!(
        count(
            &store,
            &format!("SELECT COUNT(*) FROM target_events WHERE target_id = '{victim}'")
        )
        .await,
        0
    );
    assert_eq!(
        store.get_target(&batch[1].id).await.unwrap().state,
        TargetState::Dialing
    );
    store.close().await;
    tdb.cleanup().await;
}

/// A write transaction's pages reach the database file itself soon after it
/// commits, copied by the background checkpointer rather than by a later
/// writer once the WAL is large.
#[tokio::test]
async fn committed_writes_are_copied_into_the_database_file_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    let store = Store::open(&format!("sqlite://{}", path.display()), 4)
        .await
        .unwrap();
    let od = store
        .insert_doc(OUTDIALS, "leads", &json!({"name": "leads"}), 1)
        .await
        .unwrap();
    let mut checkpoints = store
        .checkpoints()
        .expect("a file database has a checkpointer");
    checkpoints.borrow_and_update();
    store
        .insert_targets(&od.id, &[target("+15550001111", None)], 1)
        .await
        .unwrap();
    // The database file alone, without the WAL.
    let file_only = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true)
        .immutable(true);
    // (Before the first checkpoint the file may not even hold the schema.)
    let in_file = || async {
        let mut c = sqlx::ConnectOptions::connect(&file_only).await.unwrap();
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM targets WHERE outdial_id = $1")
            .bind(&od.id)
            .fetch_one(&mut c)
            .await
            .unwrap_or(0)
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            checkpoints.changed().await.unwrap();
            if in_file().await == 1 {
                break;
            }
        }
    })
    .await
    .expect("the target reached the database file within 30 s");
    // Closing the store closes the checkpointer's connection too: the last
    // connection to close checkpoints what is left and removes the WAL.
    store.close().await;
    let wal = dir.path().join("herald.db-wal");
    assert!(!wal.exists(), "{} is left after close", wal.display());
    assert_eq!(in_file().await, 1);
    // An in-memory database has no file to copy into.
    let memory = Store::open("sqlite::memory:", 1).await.unwrap();
    assert!(memory.checkpoints().is_none());
    memory.close().await;
}

/// A claim and a record batch far larger than one statement can carry (the
/// databases cap a statement's parameters) are split, and every row lands:
/// 7,000 targets claimed in one call, their 7,000 outcomes recorded in one.
async fn claims_and_records_larger_than_a_statement(db: Db) {
    use herald::store::claims::ClaimAction;
    use herald::store::recording::{CallFinal, Completion, Transition};
    const N: usize = 7_000;
    let Some(tdb) = TestDb::new(db).await else {
        return;
    };
    let store = Store::open(&tdb.url, 4).await.unwrap();
    let batch: Vec<_> = (0..N)
        .map(|i| target(&format!("+1555{:07}", i), None))
        .collect();
    let (od, campaign) = campaign_over(&store, &batch).await;
    let scope = scope_of(&campaign, &od);
    let claimed = store
        .claim_due_targets(&scope, 10, N, |_, _| ClaimAction::Dial {
            destination_index: 0,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), N);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM targets WHERE state = 'dialing' AND try_count_current = 1"
        )
        .await,
        N as i64
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM calls WHERE ended_at IS NULL").await,
        N as i64
    );

    let completions: Vec<Completion> = claimed
        .iter()
        .map(|cl| Completion {
            call_id: cl.call_id.clone(),
            target_id: cl.target.id.clone(),
            campaign_id: Some(campaign.clone()),
            expect: TargetState::Dialing,
            transitions: vec![
                Transition {
                    from: TargetState::Dialing,
                    to: TargetState::Answered,
                    reason: None,
                },
                Transition {
                    from: TargetState::Answered,
                    to: TargetState::Finished,
                    reason: Some("completed".into()),
                },
            ],
            next_attempt_at: None,
            destination_index: 0,
            call: CallFinal {
                status: "completed".into(),
                outcome: "answered".into(),
                sip_code: Some(200),
                invite_sent_at: Some(11),
                answered_at: Some(12),
                ended_at: 20,
                ..Default::default()
            },
            dnc_add: None,
            amd: None,
        })
        .collect();
    store.record_completions(&completions, 20).await.unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM targets WHERE state = 'finished' AND reason = 'completed'"
        )
        .await,
        N as i64
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM calls WHERE outcome = 'answered' AND duration_ms = 8"
        )
        .await,
        N as i64
    );
    // idle -> dialing, dialing -> answered, answered -> finished.
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM target_events").await,
        3 * N as i64
    );
    // The event log: attempt started + idle -> dialing per claim; answered,
    // ended and the two transitions per outcome.
    assert_eq!(
        count(
            &store,
            &format!("SELECT event_seq FROM campaigns WHERE id = '{campaign}'")
        )
        .await,
        6 * N as i64
    );
    store.close().await;
    tdb.cleanup().await;
}
on_both_backends!(large_batches, claims_and_records_larger_than_a_statement);

/// Answers are recorded in batches: one call writes every answer's
/// `answered_at`, moves the targets still dialing to answered with their
/// transition and events, leaves a target that moved on alone, and says
/// which moved, in order. 2,500 answers span two statements' worth of rows.
async fn answers_are_recorded_in_one_batch_for_the_targets_still_dialing(db: Db) {
    use herald::store::claims::ClaimAction;
    use herald::store::recording::Answer;
    const N: usize = 2_500;
    let Some(tdb) = TestDb::new(db).await else {
        return;
    };
    let store = Store::open(&tdb.url, 4).await.unwrap();
    let batch: Vec<_> = (0..N)
        .map(|i| target(&format!("+1556{:07}", i), None))
        .collect();
    let (od, campaign) = campaign_over(&store, &batch).await;
    let scope = scope_of(&campaign, &od);
    let claimed = store
        .claim_due_targets(&scope, 10, N, |_, _| ClaimAction::Dial {
            destination_index: 0,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), N);
    let seq_before = count(
        &store,
        &format!("SELECT event_seq FROM campaigns WHERE id = '{campaign}'"),
    )
    .await;
    // One target was closed meanwhile (say, by a recovery).
    let gone = &claimed[N - 1].target.id;
    exec(
        &store,
        &format!("UPDATE targets SET state = 'idle' WHERE id = '{gone}'"),
    )
    .await;
    let answers: Vec<Answer> = claimed
        .iter()
        .map(|c| Answer {
            call_id: c.call_id.clone(),
            target_id: c.target.id.clone(),
            campaign_id: Some(campaign.clone()),
            at: 15,
        })
        .collect();
    let moved = store.record_answers(&answers).await.unwrap();
    assert_eq!(moved.len(), N);
    assert!(moved[..N - 1].iter().all(|m| *m));
    assert!(!moved[N - 1], "the closed target did not move");
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM calls WHERE answered_at = 15").await,
        N as i64
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM targets WHERE state = 'answered'"
        )
        .await,
        N as i64 - 1
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM target_events WHERE from_state = 'dialing' \
             AND to_state = 'answered' AND sip_code = 200 AND at = 15"
        )
        .await,
        N as i64 - 1
    );
    // attempt.answered and the transition, per target that moved.
    assert_eq!(
        count(
            &store,
            &format!("SELECT event_seq FROM campaigns WHERE id = '{campaign}'")
        )
        .await,
        seq_before + 2 * (N as i64 - 1)
    );
    store.close().await;
    tdb.cleanup().await;
}
on_both_backends!(
    answers_in_batches,
    answers_are_recorded_in_one_batch_for_the_targets_still_dialing
);

/// Two nodes can recover the same dead node's attempt (one at its start,
/// one on its heartbeat tick, each from its own read of the open attempts).
/// The second completion finds the call row closed and changes nothing:
/// not the row's end, not the target, which is already on its next attempt.
async fn a_second_completion_of_a_closed_attempt_changes_nothing(db: Db) {
    use herald::store::claims::ClaimAction;
    use herald::store::recording::{CallFinal, Completion, Transition};
    let Some(tdb) = TestDb::new(db).await else {
        return;
    };
    let store = Store::open(&tdb.url, 4).await.unwrap();
    let (od, campaign) = campaign_over(&store, &[target("+15557000001", None)]).await;
    let scope = scope_of(&campaign, &od);
    let dial = |_: &herald::store::targets::TargetRow, _: &herald::store::claims::Facts<'_>| {
        ClaimAction::Dial {
            destination_index: 0,
        }
    };
    let first = store.claim_due_targets(&scope, 10, 1, dial).await.unwrap();
    let interrupted = |ended_at: i64| Completion {
        call_id: first[0].call_id.clone(),
        target_id: first[0].target.id.clone(),
        campaign_id: Some(campaign.clone()),
        expect: TargetState::Dialing,
        transitions: vec![Transition {
            from: TargetState::Dialing,
            to: TargetState::Idle,
            reason: Some("interrupted".into()),
        }],
        next_attempt_at: Some(20),
        destination_index: 0,
        call: CallFinal {
            status: "failed".into(),
            outcome: "interrupted".into(),
            ended_at,
            ..Default::default()
        },
        dnc_add: None,
        amd: None,
    };
    store
        .record_completions(&[interrupted(20)], 20)
        .await
        .unwrap();
    let second = store.claim_due_targets(&scope, 30, 1, dial).await.unwrap();
    assert_eq!(second.len(), 1, "the target is due again");
    let seq = format!("SELECT event_seq FROM campaigns WHERE id = '{campaign}'");
    let (seq_before, events_before) = (
        count(&store, &seq).await,
        count(&store, "SELECT COUNT(*) FROM target_events").await,
    );

    // The other node's recovery, read before the first one committed.
    store
        .record_completions(&[interrupted(40)], 40)
        .await
        .unwrap();
    let first_id = &first[0].call_id;
    assert_eq!(
        count(
            &store,
            &format!("SELECT ended_at FROM calls WHERE id = '{first_id}'")
        )
        .await,
        20,
        "the closed attempt keeps its end"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM targets WHERE state = 'dialing'"
        )
        .await,
        1,
        "the target stays on its new attempt"
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM calls WHERE ended_at IS NULL").await,
        1
    );
    assert_eq!(count(&store, &seq).await, seq_before, "no event logged");
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM target_events").await,
        events_before
    );
    store.close().await;
    tdb.cleanup().await;
}
on_both_backends!(
    second_completion,
    a_second_completion_of_a_closed_attempt_changes_nothing
);
