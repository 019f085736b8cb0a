//! The store's listing, replay, retention and erasure queries, driven through a running app
//! so the rows are the ones real ingest and delivery leave behind.

use chatbridge::model::Timestamp;
use chatbridge::store::{
    ConversationCursor, ConversationFilter, DeliveryState, ForgetReport, PurgeCutoffs, PurgeReport,
};

use crate::helpers::{
    Options, OwnLogs, TestApp, fixture, seed_edited, seed_of, seed_with_channel, spawn_app,
    spawn_app_with,
};

#[tokio::test]
async fn conversations_are_listed_newest_first_in_pages_and_filtered() {
    let app = spawn_app().await;
    for channel in [1, 2, 3] {
        assert!(
            app.post_smartsupp(seed_with_channel(channel))
                .await
                .status()
                .is_success()
        );
    }
    app.post_smartsupp(fixture("smartsupp/missed-chat.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 4).await;

    let all = listed(&app, ConversationFilter::default()).await;
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].received_at >= w[1].received_at));
    assert!(all.iter().all(|c| c.deliveries.delivered == 1));

    let first = listed(
        &app,
        ConversationFilter {
            limit: 3,
            ..ConversationFilter::default()
        },
    )
    .await;
    let last = first.last().unwrap();
    let cursor = ConversationCursor {
        received_at: last.received_at,
        id: last.id.clone(),
    };
    assert_eq!(
        ConversationCursor::decode(&cursor.encode()).unwrap(),
        cursor
    );
    let second = listed(
        &app,
        ConversationFilter {
            after: Some(cursor),
            limit: 3,
            ..ConversationFilter::default()
        },
    )
    .await;
    let mut paged: Vec<_> = first.iter().chain(&second).map(|c| c.id.clone()).collect();
    assert_eq!(paged, all.iter().map(|c| c.id.clone()).collect::<Vec<_>>());
    paged.dedup();
    assert_eq!(paged.len(), 4);

    let by_email = listed(
        &app,
        ConversationFilter {
            email: Some("DUSAN@domain.com".into()),
            ..ConversationFilter::default()
        },
    )
    .await;
    assert_eq!(by_email.len(), 3);
    let missed = listed(
        &app,
        ConversationFilter {
            status: Some("missed".into()),
            ..ConversationFilter::default()
        },
    )
    .await;
    assert_eq!(missed.len(), 1);

    let (row, versions) = app.store.conversation(&all[0].id).await.unwrap().unwrap();
    assert_eq!(row.id, all[0].id);
    assert_eq!(versions.len(), 1);
    assert!(
        app.store
            .conversation("smartsupp:nope")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn replay_queues_settled_pairs_and_skips_pending_ones() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let id = app.deliveries(None).await[0].conversation_id.clone();
    let connectors = vec!["helpdesk".to_owned()];

    let report = app
        .store
        .replay(std::slice::from_ref(&id), &connectors)
        .await
        .unwrap();
    assert!(report.queued.is_empty());
    assert_eq!(report.already_pending, 1);

    while app.worker.try_run_once().await.unwrap() > 0 {}
    let report = app
        .store
        .replay(std::slice::from_ref(&id), &connectors)
        .await
        .unwrap();
    assert_eq!(report.queued.len(), 1);
    let pending = app.deliveries(Some(DeliveryState::Pending)).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, report.queued[0]);
    assert_eq!(pending[0].attempts, 0);
}

#[tokio::test]
async fn deliveries_of_a_connector_no_longer_configured_wait_until_it_is_again() {
    let own = OwnLogs::capture();
    let before = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    before
        .post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    // The same store, restarted with the `helpdesk` instance removed.
    let without = spawn_app_with(Options {
        workers: false,
        store: Some(before.store_url.clone()),
        ..Options::only("archive", "webhook", "url = \"http://127.0.0.1:9/\"")
    })
    .await;
    assert_eq!(without.worker.try_run_once().await.unwrap(), 0);
    let pending = without.deliveries(Some(DeliveryState::Pending)).await;
    assert_eq!(
        pending.len(),
        1,
        "the delivery waits, neither dead nor gone"
    );
    assert_eq!(pending[0].attempts, 0);
    assert!(own.text().lines().any(|line| {
        line.contains("pending deliveries of a connector that is not configured wait")
            && line.contains("\"connector\":\"helpdesk\"")
    }));
    // Configured again (the first process still has it), the delivery goes out.
    assert_eq!(before.worker.try_run_once().await.unwrap(), 1);
    assert_eq!(
        before
            .deliveries(Some(DeliveryState::Delivered))
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn purge_removes_settled_conversations_and_keeps_pending_ones() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    app.post_smartsupp(seed_with_channel(1)).await;
    while app.worker.try_run_once().await.unwrap() > 0 {}
    app.post_smartsupp(seed_with_channel(2)).await;

    let later = Timestamp::now().plus(std::time::Duration::from_secs(1));
    let report = purged(&app, later, 100).await;
    assert_eq!(report.conversations, 1);
    let left = listed(&app, ConversationFilter::default()).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].deliveries.pending, 1);
    assert!(
        app.deliveries(Some(DeliveryState::Delivered))
            .await
            .is_empty()
    );

    while app.worker.try_run_once().await.unwrap() > 0 {}
    let yesterday = Timestamp::now().minus(std::time::Duration::from_secs(86_400));
    let report = purged(&app, yesterday, 100).await;
    assert_eq!(report.conversations, 0, "recent conversations stay");
}

#[tokio::test]
async fn a_purge_in_small_batches_misses_nothing_at_their_boundaries() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    for channel in 1..=7 {
        app.post_smartsupp(seed_with_channel(channel)).await;
    }
    while app.worker.try_run_once().await.unwrap() > 0 {}
    // Two conversations still waiting, one of them on a batch boundary: they stay, and the
    // batches after them go on.
    for channel in [2, 4] {
        app.post_smartsupp(seed_edited(|doc| {
            doc["channel"]["id"] = channel.into();
            doc["status"] = "closed".into();
        }))
        .await;
    }
    let later = Timestamp::now().plus(std::time::Duration::from_secs(1));
    let cutoffs = PurgeCutoffs {
        delivered_before: later,
        dead_before: later,
    };
    let (mut after, mut batches, mut removed) = (None, 0, 0);
    loop {
        let batch = app.store.purge(cutoffs, after, 2).await.unwrap();
        batches += 1;
        removed += batch.report.conversations;
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(removed, 5);
    assert_eq!(batches, 4, "7 conversations, 2 a batch");
    let left: Vec<_> = listed(&app, ConversationFilter::default())
        .await
        .into_iter()
        .map(|c| (c.id, c.deliveries.pending))
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|(_, pending)| *pending == 1), "{left:?}");
}

/// What purging everything settled before `cutoff` removed, `limit` at a time.
async fn purged(app: &TestApp, cutoff: Timestamp, limit: usize) -> PurgeReport {
    let cutoffs = PurgeCutoffs {
        delivered_before: cutoff,
        dead_before: cutoff,
    };
    let mut total = PurgeReport::default();
    let mut after = None;
    loop {
        let batch = app.store.purge(cutoffs, after, limit).await.unwrap();
        total.conversations += batch.report.conversations;
        total.quarantined += batch.report.quarantined;
        match batch.next {
            Some(next) => after = Some(next),
            None => return total,
        }
    }
}

#[tokio::test]
async fn forget_erases_the_visitor_and_reports_what_went() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.post_smartsupp(fixture("smartsupp/missed-chat.json"))
        .await;
    while app.worker.try_run_once().await.unwrap() > 0 {}

    let report = chatbridge::maintenance::forget(app.store.as_ref(), " Dusan@Domain.com", &[])
        .await
        .unwrap();
    assert_eq!(report.conversations, 1);
    assert_eq!(report.versions, 1);
    assert_eq!(report.deliveries, 1);
    assert_eq!(report.attempts, 1);
    let left = listed(&app, ConversationFilter::default()).await;
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].visitor_email.as_deref(), Some("dusan@domain.com"));
    let again = app.store.forget("dusan@domain.com", 100).await.unwrap();
    assert_eq!(again.report, ForgetReport::default());
    assert!(again.done);
}

#[tokio::test]
async fn forget_in_small_batches_erases_every_conversation_of_the_visitor() {
    let app = spawn_app_with(Options {
        workers: false,
        ..Options::default()
    })
    .await;
    let (erased, kept) = ("many.chats@example.com", "someone.else@example.com");
    for channel in 1..=5 {
        app.post_smartsupp(seed_of(channel, erased, "Many Chats"))
            .await;
        app.post_smartsupp(seed_of(channel + 100, kept, "Someone Else"))
            .await;
    }
    // A second version of one of them: its two bodies are one conversation.
    app.post_smartsupp(seed_edited(|doc| {
        doc["channel"]["id"] = 3.into();
        doc["visitor"]["email"] = erased.into();
        doc["status"] = "closed".into();
    }))
    .await;
    let mut batches = Vec::new();
    loop {
        let batch = app.store.forget(erased, 2).await.unwrap();
        batches.push(batch.report.conversations);
        if batch.done {
            break;
        }
    }
    assert_eq!(batches, [2, 2, 1]);
    let left = listed(&app, ConversationFilter::default()).await;
    assert_eq!(left.len(), 5);
    assert!(
        left.iter()
            .all(|c| c.visitor_email.as_deref() == Some(kept)),
        "{left:?}"
    );
}

/// The conversations `filter` lists.
async fn listed(
    app: &TestApp,
    filter: ConversationFilter,
) -> Vec<chatbridge::store::ConversationRow> {
    app.store.conversations(filter).await.unwrap()
}
