"""Scheduling: the ``Scheduler`` base, the builtin LocalScheduler, submission, job scripts
and job status."""
