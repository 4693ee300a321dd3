// Placeholder so the package builds in the wt-pg worktree; the domain library lives on another branch.
public enum IngestPlaceholder {}
