"""/ui/{symbol}: the read-only data-quality page (a chart of bars, gaps, revisions, backfills)."""
