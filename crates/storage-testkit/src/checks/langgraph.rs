//! LangGraph's newest checkpointer contract, beyond the classic one in `checkpoints`: limit
//! 0, namespaces that hold only pending writes, the format version and timestamp as given,
//! delta channel history, and values as typed bytes.

use serde_json::json;
use storage_core::{
    ChannelHistory, ChannelValue, CheckpointKey, CheckpointQuery, CheckpointSearch, PendingWrite,
};

use crate::data::{checkpoint, cp_id, json_of, versions};
use crate::TestContext;

/// `limit: Some(0)` lists nothing, as LangGraph's savers do, rather than refusing.
pub async fn list_limit_zero_lists_nothing(ctx: TestContext) {
    for n in 1..=2 {
        let cp = checkpoint("t1", "", &cp_id(n), &[("step", &n.to_string(), json!(n))]);
        let new = cp.all_versions();
        ctx.backend.put_checkpoint(cp, new).await.unwrap();
    }
    for namespace in [Some(String::new()), None] {
        let query = CheckpointQuery {
            namespace,
            limit: Some(0),
            ..CheckpointQuery::thread("t1")
        };
        assert!(ctx
            .backend
            .list_checkpoints(query)
            .await
            .unwrap()
            .is_empty());
    }
}

async fn write(ctx: &TestContext, thread: &str, ns: &str, id: &str, value: i64) {
    let key = CheckpointKey::new(thread, id).in_namespace(ns);
    let writes = vec![("ch".to_owned(), json!(value).into())];
    ctx.backend
        .put_writes(key, "task", "", writes)
        .await
        .unwrap();
}

async fn writes_of(ctx: &TestContext, thread: &str, ns: &str, id: &str) -> Vec<PendingWrite> {
    let key = CheckpointKey::new(thread, id).in_namespace(ns);
    ctx.backend.get_writes(key).await.unwrap()
}

/// Pending writes saved in a namespace that has no checkpoint yet belong to the thread
/// like any other: `delete_thread` removes them (they do not reappear when that
/// checkpoint is put later), `copy_thread` copies them, and `prune_checkpoints` treats
/// them as it treats any writes of a checkpoint that is not stored: it removes only the
/// writes of the checkpoints it removes, so these stay.
pub async fn writes_only_namespaces_belong_to_their_thread(ctx: TestContext) {
    let b = &ctx.backend;
    for thread in ["t1", "t2", "t3"] {
        let root = checkpoint(thread, "", &cp_id(1), &[("step", "1", json!(1))]);
        let new = root.all_versions();
        b.put_checkpoint(root, new).await.unwrap();
        write(&ctx, thread, "sub", &cp_id(5), 7).await;
    }

    assert_eq!(b.delete_thread("t1").await.unwrap(), 1);
    assert!(writes_of(&ctx, "t1", "sub", &cp_id(5)).await.is_empty());
    let sub = checkpoint("t1", "sub", &cp_id(5), &[("step", "5", json!(5))]);
    let new = sub.all_versions();
    b.put_checkpoint(sub, new).await.unwrap();
    let fresh = b.get_checkpoint("t1", "sub", None).await.unwrap().unwrap();
    assert!(
        fresh.pending_writes.is_empty(),
        "writes of a deleted thread reappeared: {:?}",
        fresh.pending_writes
    );

    assert_eq!(b.copy_thread("t2", "t2-copy").await.unwrap(), 1);
    let copied = writes_of(&ctx, "t2-copy", "sub", &cp_id(5)).await;
    assert_eq!(copied, writes_of(&ctx, "t2", "sub", &cp_id(5)).await);
    assert_eq!(copied.len(), 1);

    assert_eq!(b.prune_checkpoints("t3", 1).await.unwrap(), 0);
    assert_eq!(writes_of(&ctx, "t3", "sub", &cp_id(5)).await.len(), 1);

    // A thread that holds nothing but writes has no checkpoint to list, copy or count.
    write(&ctx, "t4", "sub", &cp_id(5), 7).await;
    let threads = b.list_thread_ids(None, 100).await.unwrap();
    assert!(!threads.contains(&"t4".to_owned()), "{threads:?}");
    assert_eq!(b.delete_thread("t4").await.unwrap(), 0);
    assert!(writes_of(&ctx, "t4", "sub", &cp_id(5)).await.is_empty());
    assert!(b.get_checkpoint("t3", "", None).await.unwrap().is_some());
}

/// The format version and the timestamp read back exactly as given: the offset and every
/// fractional digit, through get and list.
pub async fn format_version_and_timestamp_round_trip(ctx: TestContext) {
    let mut cp = checkpoint("t1", "", &cp_id(1), &[("step", "1", json!(1))]);
    cp.format_version = 7;
    cp.created_at = "2024-07-31T20:14:19.804150123+05:30".parse().unwrap();
    let new = cp.all_versions();
    ctx.backend.put_checkpoint(cp.clone(), new).await.unwrap();
    let got = ctx
        .backend
        .get_checkpoint("t1", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.checkpoint.format_version, 7);
    assert_eq!(
        got.checkpoint.created_at.to_rfc3339(),
        "2024-07-31T20:14:19.804150123+05:30"
    );
    let listed = ctx
        .backend
        .list_checkpoints(CheckpointQuery::thread("t1"))
        .await
        .unwrap();
    assert_eq!(listed[0].checkpoint, cp);
}

/// LangGraph's `updated_channels` round-trips through every read path as given (a list,
/// an empty list, none), and a channel name the ids' rules refuse is `InvalidInput`.
pub async fn updated_channels_round_trip(ctx: TestContext) {
    let b = &ctx.backend;
    let updated = |n: u32| match n {
        1 => None,
        2 => Some(vec![]),
        _ => Some(vec!["messages".to_owned(), "branch:to:agent".to_owned()]),
    };
    let mut puts = Vec::new();
    for n in 1..=3u32 {
        let mut cp = checkpoint("t1", "", &cp_id(n), &[("step", &n.to_string(), json!(n))]);
        cp.updated_channels = updated(n);
        let new = cp.all_versions();
        if n < 3 {
            b.put_checkpoint(cp, new).await.unwrap();
        } else {
            puts.push((cp, new));
        }
    }
    b.put_checkpoints(puts).await.unwrap();
    for n in 1..=3u32 {
        let got = b.get_checkpoint("t1", "", Some(&cp_id(n))).await.unwrap();
        assert_eq!(
            got.unwrap().checkpoint.updated_channels,
            updated(n),
            "get {n}"
        );
    }
    let listed = b
        .list_checkpoints(CheckpointQuery::thread("t1"))
        .await
        .unwrap();
    let listed: Vec<_> = listed
        .into_iter()
        .map(|tuple| tuple.checkpoint.updated_channels)
        .collect();
    assert_eq!(listed, vec![updated(3), updated(2), updated(1)]);
    b.copy_thread("t1", "t1-copy").await.unwrap();
    let latest = b
        .get_checkpoint("t1-copy", "", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.checkpoint.updated_channels, updated(3));

    let mut bad = checkpoint("t1", "", &cp_id(9), &[]);
    bad.updated_channels = Some(vec!["ok".into(), "bad\u{7}".into()]);
    let refused = b.put_checkpoint(bad, versions(&[])).await.unwrap_err();
    assert_eq!(refused.kind(), storage_core::ErrorKind::InvalidInput);
    assert!(b
        .get_checkpoint("t1", "", Some(&cp_id(9)))
        .await
        .unwrap()
        .is_none());
}

fn history_of(
    histories: &std::collections::BTreeMap<String, ChannelHistory>,
    channel: &str,
) -> (
    Option<String>,
    Option<serde_json::Value>,
    Vec<serde_json::Value>,
) {
    let history = &histories[channel];
    (
        history.seed_checkpoint_id.clone(),
        history.seed.as_ref().map(json_of),
        history.writes.iter().map(|w| json_of(&w.value)).collect(),
    )
}

/// Delta channel history, LangGraph's semantics: per channel, the value of the nearest
/// ancestor (from the target's parent) that stores one, and the channel's writes from that
/// ancestor up to the parent, oldest first, one step's writes in task-path order with
/// path-less writes first; never the target's own writes; `None` for an unknown target.
pub async fn delta_channel_history_walks_to_the_nearest_value(ctx: TestContext) {
    let b = &ctx.backend;
    // cp1 stores "msgs" (a snapshot) and "other"; cp2..cp4 move "msgs" to new versions
    // without values (deltas); "other" keeps version 1, so every checkpoint has its value.
    for n in 1..=4u32 {
        let mut cp = checkpoint("t1", "", &cp_id(n), &[]);
        cp.parent_id = (n > 1).then(|| cp_id(n - 1));
        cp.channel_versions = versions(&[("msgs", &n.to_string()), ("other", "1")]);
        let new = if n == 1 {
            cp.channel_values.insert("msgs".into(), json!(["a"]).into());
            cp.channel_values.insert("other".into(), json!(1).into());
            cp.all_versions()
        } else {
            versions(&[])
        };
        b.put_checkpoint(cp, new).await.unwrap();
    }
    let put = |id: u32, task: &'static str, path: &'static str, writes: Vec<(&str, i64)>| {
        let key = CheckpointKey::new("t1", cp_id(id));
        let writes = writes
            .into_iter()
            .map(|(channel, value)| (channel.to_owned(), json!(value).into()))
            .collect();
        async move { b.put_writes(key, task, path, writes).await.unwrap() }
    };
    put(1, "t-a", "", vec![("msgs", 1)]).await;
    put(2, "t-b", "~1", vec![("msgs", 3)]).await;
    put(2, "t-c", "", vec![("msgs", 2), ("logs", 20)]).await;
    put(3, "t-d", "", vec![("msgs", 4), ("other", 5)]).await;
    put(4, "t-e", "", vec![("msgs", 99)]).await;

    let channels = ["msgs", "other", "logs", "never"]
        .map(String::from)
        .to_vec();
    let key = CheckpointKey::new("t1", cp_id(4));
    let histories = b
        .delta_channel_history(key, channels.clone())
        .await
        .unwrap()
        .expect("the target is stored");
    assert_eq!(histories.len(), 4);
    assert_eq!(
        history_of(&histories, "msgs"),
        (
            Some(cp_id(1)),
            Some(json!(["a"])),
            vec![json!(1), json!(2), json!(3), json!(4)]
        ),
        "seed at cp1; cp1's write, cp2's path-less then '~1', cp3's; not the target's"
    );
    assert_eq!(
        history_of(&histories, "other"),
        (Some(cp_id(3)), Some(json!(1)), vec![json!(5)]),
        "the parent has a value for its version, so the walk stops there"
    );
    assert_eq!(
        history_of(&histories, "logs"),
        (None, None, vec![json!(20)])
    );
    assert_eq!(history_of(&histories, "never"), (None, None, vec![]));

    let first = CheckpointKey::new("t1", cp_id(1));
    let histories = b
        .delta_channel_history(first, channels.clone())
        .await
        .unwrap()
        .unwrap();
    assert!(histories.values().all(|h| *h == ChannelHistory::default()));

    let unknown = CheckpointKey::new("t1", cp_id(9));
    assert_eq!(
        b.delta_channel_history(unknown, channels).await.unwrap(),
        None
    );
}

/// Listing without a thread (LangGraph's `list(None, ...)`): every thread's checkpoints
/// newest first, equal ids by thread then namespace, with values and writes; namespace,
/// `before`, filter and limit as in a thread's listing; pages never split equal ids and
/// together return each checkpoint once.
pub async fn search_lists_every_thread_newest_first(ctx: TestContext) {
    let b = &ctx.backend;
    let put = |thread: &'static str, ns: &'static str, n: u32, source: &'static str| {
        let mut cp = checkpoint(thread, ns, &cp_id(n), &[("step", &n.to_string(), json!(n))]);
        cp.metadata.insert("source".into(), json!(source));
        let new = cp.all_versions();
        async move { b.put_checkpoint(cp, new).await.unwrap() }
    };
    put("a", "", 1, "loop").await;
    put("b", "", 2, "loop").await;
    put("c", "", 3, "loop").await;
    put("a", "", 4, "loop").await;
    put("b", "", 5, "input").await;
    put("a", "sub", 6, "loop").await;
    // Copies share ids with their source: cp 2 and cp 5 appear twice.
    assert_eq!(b.copy_thread("b", "b2").await.unwrap(), 2);
    let key = CheckpointKey::new("a", cp_id(4));
    let writes = vec![("step".to_owned(), json!("w").into())];
    b.put_writes(key, "task", "", writes).await.unwrap();

    let addresses = |items: &[storage_core::CheckpointTuple]| -> Vec<String> {
        items
            .iter()
            .map(|t| {
                let c = &t.checkpoint;
                format!("{}/{}/{}", c.id, c.thread_id, c.namespace)
            })
            .collect()
    };
    let expected_all: Vec<String> = [
        (6, "a", "sub"),
        (5, "b", ""),
        (5, "b2", ""),
        (4, "a", ""),
        (3, "c", ""),
        (2, "b", ""),
        (2, "b2", ""),
        (1, "a", ""),
    ]
    .iter()
    .map(|(n, thread, ns)| format!("{}/{thread}/{ns}", cp_id(*n)))
    .collect();
    let all = b
        .search_checkpoints(CheckpointSearch::newest(100))
        .await
        .unwrap();
    assert_eq!(addresses(&all.items), expected_all);
    assert_eq!(all.next_cursor, None);
    let cp4 = &all.items[3];
    assert_eq!(cp4.checkpoint.channel_values["step"], json!(4).into());
    assert_eq!(
        cp4.pending_writes.len(),
        1,
        "writes come with each checkpoint"
    );

    let root_only = CheckpointSearch {
        namespace: Some(String::new()),
        ..CheckpointSearch::newest(100)
    };
    let root = b.search_checkpoints(root_only).await.unwrap().items;
    assert_eq!(addresses(&root), expected_all[1..]);

    let mut inputs = CheckpointSearch::newest(100);
    inputs.filter.insert("source".into(), json!("input"));
    let found = b.search_checkpoints(inputs).await.unwrap().items;
    assert_eq!(addresses(&found), expected_all[1..3]);

    let older = CheckpointSearch {
        before: Some(cp_id(4)),
        ..CheckpointSearch::newest(100)
    };
    let found = b.search_checkpoints(older).await.unwrap().items;
    assert_eq!(addresses(&found), expected_all[4..]);

    let none = b
        .search_checkpoints(CheckpointSearch::newest(0))
        .await
        .unwrap();
    assert!(none.items.is_empty());

    // Pages of 2: the first keeps both copies of cp 5, so it holds 3.
    let mut search = CheckpointSearch::newest(2);
    let mut pages = Vec::new();
    loop {
        let page = b.search_checkpoints(search.clone()).await.unwrap();
        pages.push(addresses(&page.items));
        match page.next_cursor {
            Some(cursor) => search.before = Some(cursor),
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end: {pages:?}");
    }
    assert_eq!(pages[0], expected_all[..3], "{pages:?}");
    assert_eq!(pages.concat(), expected_all, "{pages:?}");

    // One id in three namespaces of one thread: a page of one holds all three.
    for ns in ["", "n1", "n2"] {
        put("z", ns, 9, "loop").await;
    }
    let page = b
        .search_checkpoints(CheckpointSearch::newest(1))
        .await
        .unwrap();
    let z = |ns: &str| format!("{}/z/{ns}", cp_id(9));
    assert_eq!(addresses(&page.items), [z(""), z("n1"), z("n2")]);
}

/// Channel values LangGraph's serializer could produce, beside JSON: typed bytes whose
/// bytes look like nothing in particular, like a NUL-led frame, like JSON, or are empty or
/// large; and a JSON value shaped like the object that stands for typed bytes in JSON
/// output, which must stay JSON.
fn mixed_values() -> Vec<(String, ChannelValue)> {
    let every_byte: Vec<u8> = (0..=255u8).rev().collect();
    let large: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
    [
        (
            "json",
            json!({"messages": [{"role": "user", "content": "hi"}]}).into(),
        ),
        ("msgpack", ChannelValue::typed("msgpack", every_byte)),
        ("empty", ChannelValue::typed("bytes", Vec::new())),
        (
            "nul_led",
            ChannelValue::typed("msgpack", &b"\0\0\0\x05{\"v\":1}"[..]),
        ),
        (
            "json_like",
            ChannelValue::typed("json", &br#"{"v":1,"kind":"channel_value","data":1}"#[..]),
        ),
        ("large", ChannelValue::typed("msgpack", large)),
        ("unicode_tag", ChannelValue::typed("ext-\u{e9}", &b"x"[..])),
        (
            "marker_shaped_json",
            json!({"$typed_bytes": {"type": "msgpack", "base64": "AA=="}}).into(),
        ),
    ]
    .into_iter()
    .map(|(channel, value)| (channel.to_owned(), value))
    .collect()
}

/// Typed bytes (a type tag and bytes, LangGraph's `dumps_typed`) round-trip exactly, beside
/// JSON, as channel values and as pending writes, through every read: get latest and by
/// id, list, search across threads, get_writes, delta channel history, a batch put and a
/// copied thread.
pub async fn typed_bytes_round_trip_exactly(ctx: TestContext) {
    let b = &ctx.backend;
    let values = mixed_values();
    let mut first = checkpoint("t1", "", &cp_id(1), &[]);
    for (channel, value) in &values {
        first.channel_versions.insert(channel.clone(), "1".into());
        first.channel_values.insert(channel.clone(), value.clone());
    }
    let new = first.all_versions();
    b.put_checkpoint(first.clone(), new.clone()).await.unwrap();
    let mut writes = values.clone();
    writes.push((
        storage_core::checkpoint::INTERRUPT_CHANNEL.into(),
        ChannelValue::typed("msgpack", &b"\x81\xa1k\xa1v"[..]),
    ));
    b.put_writes(first.key(), "task", "path", writes.clone())
        .await
        .unwrap();
    // The second checkpoint stores no value, so its history reaches back to the first.
    let mut second = checkpoint("t1", "", &cp_id(2), &[]);
    second.parent_id = Some(cp_id(1));
    second.channel_versions = first.channel_versions.clone();
    b.put_checkpoints(vec![(second.clone(), versions(&[]))])
        .await
        .unwrap();

    let expected_writes: Vec<(String, ChannelValue)> = {
        let mut by_index: Vec<(i64, String, ChannelValue)> = writes
            .iter()
            .enumerate()
            .map(|(i, (channel, value))| {
                let index =
                    storage_core::checkpoint::special_write_index(channel).unwrap_or(i as i64);
                (index, channel.clone(), value.clone())
            })
            .collect();
        by_index.sort_by_key(|(index, _, _)| *index);
        by_index.into_iter().map(|(_, c, v)| (c, v)).collect()
    };
    let pairs = |writes: &[PendingWrite]| -> Vec<(String, ChannelValue)> {
        writes
            .iter()
            .map(|w| (w.channel.clone(), w.value.clone()))
            .collect()
    };
    let check_first = |tuple: &storage_core::CheckpointTuple, how: &str| {
        assert_eq!(
            tuple.checkpoint.channel_values, first.channel_values,
            "{how}"
        );
        assert_eq!(pairs(&tuple.pending_writes), expected_writes, "{how}");
    };

    let by_id = b.get_checkpoint("t1", "", Some(&cp_id(1))).await.unwrap();
    check_first(&by_id.unwrap(), "get by id");
    let latest = b.get_checkpoint("t1", "", None).await.unwrap().unwrap();
    assert_eq!(latest.checkpoint.id, cp_id(2));
    assert_eq!(
        latest.checkpoint.channel_values, first.channel_values,
        "latest"
    );
    let listed = b
        .list_checkpoints(CheckpointQuery::thread("t1"))
        .await
        .unwrap();
    check_first(&listed[1], "list");
    let searched = b
        .search_checkpoints(CheckpointSearch::newest(2))
        .await
        .unwrap();
    check_first(&searched.items[1], "search");
    let stored_writes = b.get_writes(first.key()).await.unwrap();
    assert_eq!(pairs(&stored_writes), expected_writes, "get_writes");

    let channels: Vec<String> = values.iter().map(|(c, _)| c.clone()).collect();
    let histories = b
        .delta_channel_history(second.key(), channels)
        .await
        .unwrap()
        .expect("the target exists");
    for (channel, value) in &values {
        let history: &ChannelHistory = &histories[channel];
        assert_eq!(history.seed.as_ref(), Some(value), "seed of {channel}");
        assert_eq!(
            pairs(&history.writes),
            vec![(channel.clone(), value.clone())],
            "writes of {channel}"
        );
    }

    assert_eq!(b.copy_thread("t1", "t2").await.unwrap(), 2);
    let copied = b.get_checkpoint("t2", "", Some(&cp_id(1))).await.unwrap();
    check_first(&copied.unwrap(), "copy");
}

/// A type tag that is empty, longer than the limit or holds a control character is
/// refused as invalid input, by `put_checkpoint` and by `put_writes`, and stores nothing.
pub async fn typed_bytes_with_a_bad_type_tag_are_refused(ctx: TestContext) {
    let b = &ctx.backend;
    let too_long = "t".repeat(storage_core::channel_value::MAX_TYPE_TAG_BYTES + 1);
    for tag in ["", "msg\npack", "\u{0}", too_long.as_str()] {
        let bad = ChannelValue::typed(tag, &b"x"[..]);
        let mut cp = checkpoint("t1", "", &cp_id(1), &[("ok", "1", json!(1))]);
        cp.channel_versions.insert("bad".into(), "1".into());
        cp.channel_values.insert("bad".into(), bad.clone());
        let new = cp.all_versions();
        let err = b.put_checkpoint(cp, new).await.unwrap_err();
        assert_eq!(
            err.kind(),
            storage_core::ErrorKind::InvalidInput,
            "{tag:?}: {err}"
        );
        let key = CheckpointKey::new("t1", cp_id(1));
        let writes = vec![("ok".to_owned(), json!(1).into()), ("bad".to_owned(), bad)];
        let err = b
            .put_writes(key.clone(), "task", "", writes)
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            storage_core::ErrorKind::InvalidInput,
            "{tag:?}: {err}"
        );
        assert!(b.get_checkpoint("t1", "", None).await.unwrap().is_none());
        assert!(b.get_writes(key).await.unwrap().is_empty());
    }
}
