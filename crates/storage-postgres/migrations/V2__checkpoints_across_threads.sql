-- search_checkpoints: every thread's checkpoints, newest first, read in index order.
CREATE INDEX checkpoints_newest ON checkpoints (checkpoint_id DESC);
