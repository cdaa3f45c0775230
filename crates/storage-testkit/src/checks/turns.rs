//! Turn-aware history: turn ids and tool-call links round trip, the last N turns come back
//! whole, and a window never hands out a tool result without its call.

use serde_json::json;
use storage_core::turns::{ConversationStoreExt, HistoryWindow, MAX_TOOL_PAIR_DISTANCE};
use storage_core::{ErrorKind, Message, NewMessage};

use crate::data::assert_kind;
use crate::TestContext;

fn contents(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|message| message.content.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn in_turn(turn: &str, text: &str) -> NewMessage {
    NewMessage::new("assistant", json!(text)).in_turn(turn)
}

/// A turn id, the tool calls a message makes and the call a result answers are stored and
/// read back by every read, single and batch appends alike.
pub async fn turn_fields_round_trip(ctx: TestContext) {
    let b = &ctx.backend;
    let call = NewMessage::new("assistant", json!({"tool_calls": 2}))
        .in_turn("t:1")
        .calling_tools(["call_a", "call b"]);
    let stored = b.append_message("s1", call.clone()).await.unwrap();
    assert_eq!(stored.turn_id.as_deref(), Some("t:1"));
    assert_eq!(stored.tool_calls, vec!["call_a", "call b"]);
    let results = b
        .append_messages(
            "s1",
            vec![
                NewMessage::new("tool", json!("A"))
                    .in_turn("t:1")
                    .tool_result_for("call_a"),
                NewMessage::new("tool", json!("B"))
                    .in_turn("t:1")
                    .tool_result_for("call b"),
                NewMessage::new("user", json!("plain")),
            ],
        )
        .await
        .unwrap();
    let read = b.get_conversation_history("s1", 10).await.unwrap();
    assert_eq!(read[0], stored);
    assert_eq!(&read[1..], &results[..]);
    assert_eq!(read[1].tool_result_for.as_deref(), Some("call_a"));
    assert_eq!(read[3].turn_id, None);
    assert!(read[3].tool_calls.is_empty());
    assert_eq!(read[3].tool_result_for, None);
    let paged = b
        .get_messages("s1", storage_core::MessageRange::after(0, 10))
        .await
        .unwrap();
    assert_eq!(paged, read);
    for bad in [
        NewMessage::new("user", json!(1)).in_turn(""),
        NewMessage::new("user", json!(1)).in_turn("tab\there"),
        NewMessage::new("user", json!(1)).calling_tools([""]),
        NewMessage::new("user", json!(1)).tool_result_for("x".repeat(300)),
        NewMessage::new("user", json!(1)).calling_tools((0..257).map(|i| i.to_string())),
    ] {
        assert_kind(b.append_message("s1", bad).await, ErrorKind::InvalidInput);
    }
    assert_eq!(b.get_conversation_history("s1", 10).await.unwrap().len(), 4);
}

/// The last N turns come back whole: a run of messages with one turn id is one turn, a
/// message without a turn id is a turn of its own.
pub async fn last_turns_are_whole(ctx: TestContext) {
    let b = &ctx.backend;
    let window = |turns| HistoryWindow::LastTurns { turns };
    assert!(b
        .get_history_window("s1", window(3))
        .await
        .unwrap()
        .is_empty());
    let mut history = vec![
        in_turn("t1", "t1.a"),
        in_turn("t1", "t1.b"),
        in_turn("t1", "t1.c"),
        NewMessage::new("user", json!("loose")),
    ];
    // A turn longer than one page of the backward walk.
    history.extend((0..70).map(|i| in_turn("t2", &format!("t2.{i}"))));
    history.extend([in_turn("t3", "t3.a"), in_turn("t3", "t3.b")]);
    // The same turn id later again is another turn.
    history.push(in_turn("t1", "t1 again"));
    b.append_messages("s1", history).await.unwrap();
    let last =
        |turns| async move { contents(&b.get_history_window("s1", window(turns)).await.unwrap()) };
    assert_eq!(last(1).await, vec!["t1 again"]);
    assert_eq!(last(2).await, vec!["t3.a", "t3.b", "t1 again"]);
    let three = last(3).await;
    assert_eq!(three.len(), 73);
    assert_eq!(three[0], "t2.0");
    assert_eq!(last(4).await[0], "loose");
    let all = last(5).await;
    assert_eq!(all.len(), 77);
    assert_eq!(&all[..3], ["t1.a", "t1.b", "t1.c"]);
    assert_eq!(last(100).await, all);
    let sequences: Vec<u64> = b
        .get_history_window("s1", window(5))
        .await
        .unwrap()
        .iter()
        .map(|message| message.sequence)
        .collect();
    assert_eq!(sequences, (1..=77).collect::<Vec<u64>>());
    assert_kind(
        b.get_history_window("s1", window(0)).await,
        ErrorKind::InvalidInput,
    );
}

/// The last N messages asked to keep tool pairs reach back to the call of every result
/// they hold, and leave out a result whose call was never stored.
pub async fn last_messages_keep_tool_calls_with_results(ctx: TestContext) {
    let b = &ctx.backend;
    let window = |limit, keep_tool_pairs| HistoryWindow::LastMessages {
        limit,
        keep_tool_pairs,
    };
    b.append_messages(
        "s1",
        vec![
            NewMessage::new("user", json!("question")),
            NewMessage::new("assistant", json!("call A and B")).calling_tools(["A", "B"]),
            NewMessage::new("assistant", json!("call C")).calling_tools(["C"]),
            NewMessage::new("tool", json!("result C")).tool_result_for("C"),
            NewMessage::new("tool", json!("result B")).tool_result_for("B"),
            NewMessage::new("tool", json!("result A")).tool_result_for("A"),
            NewMessage::new("tool", json!("result of a call never stored")).tool_result_for("Z"),
            NewMessage::new("assistant", json!("answer")),
        ],
    )
    .await
    .unwrap();
    let plain = b.get_history_window("s1", window(2, false)).await.unwrap();
    assert_eq!(
        contents(&plain),
        ["result of a call never stored", "answer"]
    );
    let paired = b.get_history_window("s1", window(2, true)).await.unwrap();
    assert_eq!(
        contents(&paired),
        ["answer"],
        "an orphaned result is left out"
    );
    let paired = b.get_history_window("s1", window(3, true)).await.unwrap();
    assert_eq!(
        contents(&paired),
        [
            "call A and B",
            "call C",
            "result C",
            "result B",
            "result A",
            "answer"
        ]
    );
    let paired = b.get_history_window("s1", window(5, true)).await.unwrap();
    assert_eq!(paired[0].content, json!("call A and B"));
    let all = b.get_history_window("s1", window(100, true)).await.unwrap();
    assert_eq!(all.len(), 7);
    assert_kind(
        b.get_history_window("s1", window(0, true)).await,
        ErrorKind::InvalidInput,
    );
}

/// A window reaches back over several pages to a distant call, and no further than
/// [`MAX_TOOL_PAIR_DISTANCE`] messages before its start.
pub async fn tool_pairs_reach_back_over_pages_within_their_limit(ctx: TestContext) {
    let b = &ctx.backend;
    let filler = |count: usize, label: &str| -> Vec<NewMessage> {
        (0..count)
            .map(|i| NewMessage::new("assistant", json!(format!("{label} {i}"))))
            .collect()
    };
    b.append_message(
        "near",
        NewMessage::new("assistant", json!("call")).calling_tools(["n"]),
    )
    .await
    .unwrap();
    b.append_messages("near", filler(150, "between"))
        .await
        .unwrap();
    b.append_message(
        "near",
        NewMessage::new("tool", json!("result")).tool_result_for("n"),
    )
    .await
    .unwrap();
    let window = HistoryWindow::LastMessages {
        limit: 1,
        keep_tool_pairs: true,
    };
    let near = b.get_history_window("near", window).await.unwrap();
    assert_eq!(near.len(), 152);
    assert_eq!(near[0].content, json!("call"));
    assert_eq!(near[151].content, json!("result"));

    // The call lies one message beyond the limit: the result is left out.
    b.append_message(
        "far",
        NewMessage::new("assistant", json!("call")).calling_tools(["f"]),
    )
    .await
    .unwrap();
    for part in 0..4 {
        let count = MAX_TOOL_PAIR_DISTANCE / 4;
        b.append_messages("far", filler(count, &format!("part {part}")))
            .await
            .unwrap();
    }
    b.append_message(
        "far",
        NewMessage::new("tool", json!("result")).tool_result_for("f"),
    )
    .await
    .unwrap();
    let far = b.get_history_window("far", window).await.unwrap();
    assert!(far.is_empty(), "{} messages", far.len());
    let two = HistoryWindow::LastMessages {
        limit: 2,
        keep_tool_pairs: true,
    };
    // From a window one message longer the call is exactly at the limit, and is reached.
    let far = b.get_history_window("far", two).await.unwrap();
    assert_eq!(far.len(), MAX_TOOL_PAIR_DISTANCE + 2);
    assert_eq!(far[0].content, json!("call"));
}

/// Writers append whole turns (one batch each) while readers ask for the last two turns:
/// every read holds exactly two whole turns, in sequence order.
pub async fn last_turns_during_appends_are_whole(ctx: TestContext) {
    let b = &ctx.backend;
    b.append_messages(
        "s1",
        (0..3).map(|i| in_turn("seed-0", &i.to_string())).collect(),
    )
    .await
    .unwrap();
    b.append_messages(
        "s1",
        (0..3).map(|i| in_turn("seed-1", &i.to_string())).collect(),
    )
    .await
    .unwrap();
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                for turn in 0..5 {
                    let id = format!("w{writer}-{turn}");
                    let messages = (0..3).map(|i| in_turn(&id, &i.to_string())).collect();
                    b.append_messages("s1", messages).await.unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let b = ctx.backend.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    let read = b
                        .get_history_window("s1", HistoryWindow::LastTurns { turns: 2 })
                        .await
                        .unwrap();
                    assert_eq!(read.len(), 6, "two turns of three");
                    assert_eq!(read[0].turn_id, read[2].turn_id);
                    assert_eq!(read[3].turn_id, read[5].turn_id);
                    assert_ne!(read[0].turn_id, read[3].turn_id);
                    assert!(read.windows(2).all(|p| p[0].sequence + 1 == p[1].sequence));
                }
            })
        })
        .collect();
    for task in writers.into_iter().chain(readers) {
        task.await.unwrap();
    }
    let last = b
        .get_history_window("s1", HistoryWindow::LastTurns { turns: 22 })
        .await
        .unwrap();
    assert_eq!(last.len(), 66);
}
