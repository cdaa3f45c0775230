//! The conformance suite every storage backend runs.
//!
//! Each rule of the contract is a plain `async fn` check in [`checks`], taking a
//! [`TestContext`] whose backend lives in a namespace of its own, so the suite also runs
//! against a shared server that already holds data. A backend crate runs the whole suite
//! with one macro call in its `tests/conformance.rs`:
//!
//! ```
//! use std::sync::Arc;
//! use storage_core::StorageBackend;
//!
//! /// Builds the backend under test for `namespace` (connects, picks the schema, ...).
//! async fn backend(namespace: String) -> Arc<dyn StorageBackend> {
//!     # return unimplemented!("{namespace}");
//!     // Arc::new(storage_memory::MemoryBackend::new(&namespace).unwrap())
//! }
//!
//! storage_testkit::conformance_tests!(backend);
//! # fn main() {}
//! ```
//!
//! The macro expands to one named `#[tokio::test]` per check (`sessions::create_then_get`,
//! ...), so the test crate needs `tokio` (with `macros` and `rt-multi-thread`) as a
//! dev-dependency.

pub mod bench;
pub mod checks;
pub mod compat;
mod context;
pub mod counts;
pub mod data;
pub mod fault;
pub mod langgraph_bench;
pub mod scenarios;
pub mod servers;
pub mod undecodable;

pub use context::{BackendFactory, TestContext};

/// Runs one check against a fresh namespace of the backend `factory` builds.
///
/// Used by [`conformance_tests!`]; call it directly to run a single check by hand.
pub async fn run_check<F, Fut, C, CFut>(factory: F, check: C)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = std::sync::Arc<dyn storage_core::StorageBackend>>
        + Send
        + 'static,
    C: FnOnce(TestContext) -> CFut,
    CFut: std::future::Future<Output = ()>,
{
    let ctx = TestContext::new(BackendFactory::new(factory)).await;
    check(ctx).await;
}

/// Expands to one `#[tokio::test]` per conformance check, grouped in one module per
/// contract (`sessions::create_then_get`, `checkpoints::latest_is_greatest_id`, ...).
///
/// `$factory` names an `async fn(String) -> Arc<dyn StorageBackend>` in the calling module
/// that builds a backend for the given namespace. See the crate documentation.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:ident) => {
        $crate::__conformance_modules! {
            $factory;
            sessions {
                create_then_get,
                create_existing_is_already_exists,
                concurrent_creates_have_one_winner,
                get_missing_is_none,
                update_or_end_missing_is_not_found,
                update_merges_metadata_top_level,
                update_counts_requests_time_and_errors,
                concurrent_increments_are_exact,
                end_records_status_and_time,
                update_advances_last_activity,
                delete_removes_conversation_and_context,
                delete_then_recreate_starts_fresh,
                batch_create_reports_existing,
                batch_create_rejects_bad_batches_whole,
                batch_get_keeps_input_order,
                list_filters_by_user_and_status,
                list_orders_by_last_activity,
                list_pages_cover_everything_once,
                list_rejects_bad_cursor_and_limit,
            }
            conversation {
                append_assigns_sequences_from_one,
                concurrent_appends_are_gapless,
                client_id_replay_adds_nothing,
                concurrent_replays_store_once,
                history_is_last_n_oldest_first,
                history_edge_cases,
                paging_forward_after,
                paging_backward_before,
                batch_append_is_consecutive,
                concurrent_batches_stay_whole,
                batch_append_dedupes_stored_client_ids,
                batch_append_rejects_bad_batches_whole,
                pop_last_does_not_reuse_numbers,
                pop_last_on_empty_is_none,
                clear_keeps_numbering,
                conversations_are_per_session,
            }
            compaction {
                a_summary_replaces_the_prefix,
                kept_messages_read_back_and_go_with_their_summary,
                a_retried_compaction_with_a_client_id_changes_nothing,
                compaction_racing_appends_is_exact,
                rewind_removes_the_tail_and_keeps_numbering,
            }
            fork {
                a_fork_copies_and_shares_nothing_writable,
                a_fork_during_appends_holds_exactly_its_prefix,
                a_compacted_conversation_forks_with_its_summary,
            }
            turns {
                turn_fields_round_trip,
                last_turns_are_whole,
                last_messages_keep_tool_calls_with_results,
                tool_pairs_reach_back_over_pages_within_their_limit,
                last_turns_during_appends_are_whole,
            }
            checkpoints {
                put_then_get_by_id,
                latest_is_greatest_id,
                unknown_id_is_none_not_latest,
                namespaces_are_separate_chains,
                list_order_before_and_limit,
                list_returns_values_and_writes,
                list_filter_is_exact_and_type_strict,
                list_without_namespace_covers_all,
                list_across_namespaces_merges_before_filter_and_limit,
                unchanged_channels_are_not_rewritten,
                channels_without_values_are_absent,
                put_again_replaces_record_not_values,
                parent_is_what_the_caller_names,
                inconsistent_new_versions_store_nothing,
                normal_writes_first_writer_wins,
                special_writes_last_writer_wins,
                writes_are_ordered_by_path_task_index,
                writes_belong_to_their_checkpoint_id,
                concurrent_puts_are_all_visible,
                batch_put_stores_each_in_order,
                batch_put_with_a_bad_item_stores_nothing,
                delete_thread_removes_every_namespace,
                prune_keeps_newest_and_shared_values,
                copy_thread_copies_everything,
                copy_thread_refuses_occupied_or_missing,
                delete_for_runs_removes_matching,
                generated_ids_order_checkpoints,
            }
            langgraph {
                list_limit_zero_lists_nothing,
                writes_only_namespaces_belong_to_their_thread,
                format_version_and_timestamp_round_trip,
                updated_channels_round_trip,
                delta_channel_history_walks_to_the_nearest_value,
                search_lists_every_thread_newest_first,
                typed_bytes_round_trip_exactly,
                typed_bytes_with_a_bad_type_tag_are_refused,
            }
            task_context {
                missing_is_none,
                store_overwrites_and_versions_increase,
                stale_version_conflicts_and_changes_nothing,
                concurrent_compare_and_set_has_one_winner,
                optimistic_loop_loses_no_update,
                delete_is_per_session,
                typed_round_trip,
            }
            context_versions {
                earlier_versions_read_back,
                versions_list_newest_first_in_pages,
                retention_keeps_the_newest_versions,
                a_conflict_adds_no_version,
                concurrent_stores_race_retention_exactly,
                delete_removes_every_version,
                scopes_are_separate_contexts,
                session_removal_keeps_shared_contexts,
                merged_view_prefers_the_most_specific_scope,
                shared_compare_and_set_has_one_winner,
                context_scopes_list_in_pages,
            }
            checkpoint_values {
                values_survive_every_checkpoint_path,
                a_read_gives_each_checkpoint_its_shared_values,
            }
            retention {
                messages_keep_the_newest_with_their_numbers,
                messages_older_than_the_cutoff_go,
                a_removed_summary_takes_what_it_kept,
                context_versions_keep_the_newest,
                context_keep_last_counts_version_numbers,
                checkpoints_keep_the_newest_per_namespace,
                artifact_versions_keep_the_newest,
                keep_last_zero_is_refused_and_no_limit_removes_nothing,
                retention_stays_in_its_namespace,
                a_version_store_racing_retention_is_exact,
                appends_racing_retention_keep_their_numbers,
                puts_and_saves_racing_retention_keep_the_latest,
            }
            artifacts {
                save_then_get,
                versions_count_from_zero,
                exists_by_name_and_version,
                list_names_and_versions,
                delete_one_version,
                delete_all_versions,
                clear_touches_only_its_scope,
                concurrent_saves_get_distinct_versions,
                binary_and_empty_content_round_trip,
                streaming_round_trip,
                streaming_size_limit_stores_nothing,
                json_documents_round_trip,
            }
            input {
                empty_ids_are_rejected,
                id_length_limit_is_256_bytes,
                control_characters_are_rejected,
                rejected_input_changes_nothing,
                hostile_session_ids_are_isolated,
                hostile_thread_ids_are_isolated,
                hostile_artifact_scopes_are_isolated,
                ids_extending_one_another_are_distinct,
                series_of_ids_extending_one_another_are_distinct,
            }
            policy {
                json_depth_limit_is_64,
                hostile_depth_is_refused_without_recursion,
                metadata_limits_are_the_same_everywhere,
                channel_version_rules_are_the_same_everywhere,
                list_cursors_are_validated,
                counters_saturate_at_u64_max,
                imported_numbers_fit_every_backend,
            }
            namespaces {
                sessions_are_invisible_across_namespaces,
                checkpoints_are_invisible_across_namespaces,
                hostile_ids_stay_in_their_namespace,
                artifacts_are_invisible_across_namespaces,
                cleanup_stays_in_its_namespace,
                same_namespace_is_shared,
            }
            lifecycle {
                initialize_is_idempotent,
                operations_after_close_fail_as_connection,
                health_check_reports_healthy,
                metrics_name_their_backend,
                cleanup_removes_idle_sessions_with_their_data,
                cleanup_counts_each_session_once,
            }
            properties {
                session_and_message_json_round_trips,
                checkpoint_json_round_trips,
                context_and_artifact_json_round_trips,
            }
            migration {
                import_session_stores_the_exact_record,
                import_messages_keeps_sequences_and_stores_once,
                import_task_context_keeps_its_version,
                import_artifact_keeps_versions,
                list_thread_ids_pages_in_order,
                list_artifact_scopes_pages_in_order,
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_modules {
    ($factory:ident; $($module:ident { $($check:ident,)+ })+) => {
        $(
            mod $module {
                $(
                    #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $check() {
                        $crate::run_check(super::$factory, $crate::checks::$module::$check).await;
                    }
                )+
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    /// Every `pub async fn` check in `src/checks/` is listed in `conformance_tests!`, so no
    /// check is written and then silently never run.
    #[test]
    fn every_check_is_listed_in_the_macro() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
        let macro_body = &lib[lib.find("macro_rules! conformance_tests").unwrap()..];
        let mut missing = Vec::new();
        let mut count = 0;
        for entry in std::fs::read_dir(root.join("checks")).unwrap() {
            let path = entry.unwrap().path();
            let module = path.file_stem().unwrap().to_str().unwrap().to_owned();
            if module == "mod" {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let listed = macro_body
                .split(&format!("{module} {{"))
                .nth(1)
                .and_then(|rest| rest.split('}').next())
                .unwrap_or_else(|| panic!("module {module} is not in the macro"));
            for line in source.lines() {
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    let name = rest.split('(').next().unwrap();
                    count += 1;
                    if !listed.contains(&format!("{name},")) {
                        missing.push(format!("{module}::{name}"));
                    }
                }
            }
        }
        assert!(
            missing.is_empty(),
            "checks not listed in conformance_tests!: {missing:?}"
        );
        assert!(count >= 80, "the suite has {count} checks");
    }
}
