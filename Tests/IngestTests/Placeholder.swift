// Placeholder so the package builds in the wt-pg worktree.
import Testing
