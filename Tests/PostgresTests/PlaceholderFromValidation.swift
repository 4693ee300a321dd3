// Keeps the PostgresTests target buildable until its tests land (from the wt-val worktree).
