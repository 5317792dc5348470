"""Backfill: queue ranges, claim queued jobs, run them in per-provider batches, finalize, the DLQ.

A job is `queued` (enqueued by gap detection, a manual trigger or the API), `running`
(claimed by an md_backfill run, leased), `done`, or `dead` (its batch exhausted its retries:
the dead-letter queue). A running job whose lease expired (its worker vanished) goes back
to the queue at the next claim.
"""
